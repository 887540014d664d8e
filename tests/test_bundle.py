"""Air-gap bundles through the CLI: export, listing, import, and everything import must refuse.

The exporting node is the test's default home (node "test-node"); the far side is a second home
(node "far-node") with its own store, catalog and trust store. Every refusal is checked to leave
the far side's store (every path, content and link) and catalog (every row) exactly as before.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import LORA, MODEL, Result
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_schemas import schema, validate

import hubd.bundle.importer
from hubd.bundle.export import export_bundle
from hubd.bundle.format import INDEX_PAYLOAD_TYPE
from hubd.bundle.importer import import_bundle
from hubd.config import load_settings
from hubd.context import Context
from hubd.errors import StoreError
from hubd.refs import RepoRef
from hubd.trust.keys import load_private_key
from hubd.trust.oms import dsse_envelope

Hubd = Callable[..., Result]
State = tuple[dict[str, str], list[str]]


@pytest.fixture
def source(hubd: Hubd, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> Hubd:
    """The exporting node (the default home), with acme/tiny-llama mirrored."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    return hubd


@pytest.fixture
def far_home(tmp_path: Path) -> Path:
    return tmp_path / "far"


@pytest.fixture
def far(hubd: Hubd, far_home: Path, monkeypatch: pytest.MonkeyPatch) -> Hubd:
    """`hubd --home FAR …` as node far-node: the other side of the air gap (catalog created)."""

    def run(*args: str) -> Result:
        with monkeypatch.context() as env:
            env.setenv("HUBD_NODE_NAME", "far-node")
            env.delenv("HF_ENDPOINT", raising=False)
            return hubd("--home", str(far_home), *args)

    assert run("trust", "ls").code == 0
    return run


def trust_exporter(source: Hubd, far: Hubd, far_home: Path, tmp_path: Path) -> None:
    """The far side trusts the exporting node's key as "exporter" and requires it for acme/*."""
    pub = tmp_path / "exporter.pub"
    pub.write_text(source("keys", "show", "--public").out)
    assert far("trust", "add", "exporter", str(pub)).code == 0
    (far_home / "trust" / "policy.toml").write_text(
        '[[rules]]\nrepo = "acme/*"\nsigners = ["exporter"]\n'
    )


def state(home: Path) -> State:
    """Every path under the store with its content or link target, and every catalog row."""
    tree = {}
    store = home / "store"
    for path in sorted(store.rglob("*")):
        rel = str(path.relative_to(store))
        if path.is_symlink():
            tree[rel] = f"-> {path.readlink()}"
        elif path.is_dir():
            tree[rel] = "dir"
        else:
            tree[rel] = f"{path.stat().st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    with closing(sqlite3.connect(home / "catalog.db")) as db:
        rows = list(db.iterdump())
    return tree, rows


def export(hubd: Hubd, path: Path, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = hubd("export", *args, "-o", str(path), "--json").json()
    return result


def members(bundle: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(bundle) as tar:
        return tar.getmembers()


def read_index(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tar:
        data = tar.extractfile(tar.getmembers()[0])
        assert data is not None
        index: dict[str, Any] = json.loads(data.read())
        return index


def rebuild(
    bundle: Path,
    target: Path,
    edit: Callable[[list[tuple[tarfile.TarInfo, bytes | None]]], None],
) -> Path:
    """A copy of ``bundle`` whose (header, data) list ``edit`` changed in place."""
    with tarfile.open(bundle) as tar:
        items: list[tuple[tarfile.TarInfo, bytes | None]] = []
        for member in tar.getmembers():
            data = tar.extractfile(member)
            items.append((member, data.read() if data else None))
    edit(items)
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as out:
        for info, data in items:
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    return target


def with_index(
    items: list[tuple[tarfile.TarInfo, bytes | None]], index: dict[str, Any], sign: bool = True
) -> None:
    """Replace the index, signed again with the exporter's key (an exporter that lies) unless
    ``sign`` is false (someone who edits the bundle without that key)."""
    data = json.dumps(index).encode()
    info = items[0][0]
    info.size = len(data)
    items[0] = (info, data)
    if sign:
        key = load_private_key(Path(os.environ["HUBD_HOME"]) / "keys" / "node.key")
        envelope = json.dumps(dsse_envelope(key, data, INDEX_PAYLOAD_TYPE)).encode()
        sig_info = items[1][0]
        sig_info.size = len(envelope)
        items[1] = (sig_info, envelope)


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_export_import_round_trip(source: Hubd, far: Hubd, far_home: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar"
    exported = export(source, bundle, MODEL)
    shown = source("show", MODEL, "--json").json()["revisions"][0]
    assert exported["revisions"] == [{"repo": MODEL, "commit": shown["commit"], "refs": ["main"]}]
    assert exported["blobs"] == len({f["sha256"] for f in shown["files"]})
    assert not list(tmp_path.glob(".b.tar*"))  # written to a temp file, then renamed

    index = read_index(bundle)
    validate("bundle-index.schema.json", index)
    names = [m.name for m in members(bundle)]
    sig_dir = f"signatures/{MODEL}/{shown['commit']}/"
    kinds = [n.split("/")[0] for n in names]
    order = ["hubd-bundle.json", "hubd-bundle.json.sig", "signatures", "blobs"]
    assert kinds[:2] == order[:2] and kinds == sorted(kinds, key=order.index)
    carried = {n.removeprefix(sig_dir) for n in names if n.startswith(sig_dir)}
    assert "provenance.intoto.jsonl" in carried and any(n.endswith(".sig") for n in carried)
    assert sorted(n.removeprefix("blobs/") for n in names if n.startswith("blobs/")) == sorted(
        {f["sha256"] for f in shown["files"]}
    )

    trust_exporter(source, far, far_home, tmp_path)
    imported = far("import", str(bundle), "--json").json()
    assert imported["exporter"] == "test-node" and imported["exporter_trusted_as"] == "exporter"
    (rev,) = imported["revisions"]
    assert rev["status"] == "imported" and rev["signers"] == ["exporter", "node"]
    assert imported["blobs_added"] == exported["blobs"]

    assert far("verify", MODEL, "--signatures").code == 0
    there = far("show", MODEL, "--json").json()["revisions"][0]
    assert there["files"] == shown["files"] and there["refs"] == ["main"]
    hops = [(h["node"], h["source"]) for h in there["provenance"]]
    assert hops[:-1] == [(h["node"], h["source"]) for h in shown["provenance"]]
    assert hops[-1] == ("far-node", f"bundle:test-node/{MODEL}")
    chain = (far_home / "store" / sig_dir / "provenance.intoto.jsonl").read_text().splitlines()
    assert len(chain) == 2  # the exporter's statement, then the far side's own
    served = far("provenance", MODEL, "--json").json()
    assert served["ok"] is True

    before = state(far_home)
    again = far("import", str(bundle))
    assert again.code == 0 and "already present: nothing changed" in again.out
    assert state(far_home) == before


def test_stream_through_a_pipe(source: Hubd, far: Hubd, far_home: Path) -> None:
    """`hubd export -o - | hubd import -`: neither side needs the bundle as a file."""
    command = [sys.executable, "-m", "hubd.cli.main"]
    exporter = subprocess.Popen([*command, "export", MODEL, "-o", "-"], stdout=subprocess.PIPE)
    importer = subprocess.Popen(
        [*command, "--home", str(far_home), "import", "-", "--json"],
        stdin=exporter.stdout,
        stdout=subprocess.PIPE,
        env={**os.environ, "HUBD_NODE_NAME": "far-node"},
    )
    assert exporter.stdout is not None
    exporter.stdout.close()  # the importer holds the pipe's read end
    out, _ = importer.communicate(timeout=60)
    assert exporter.wait(60) == 0 and importer.returncode == 0
    assert json.loads(out)["revisions"][0]["status"] == "imported"
    assert far("verify", MODEL).code == 0


def test_untrusted_exporter_is_refused(
    source: Hubd, far: Hubd, far_home: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    export(source, bundle, MODEL)
    (far_home / "trust" / "policy.toml").parent.mkdir(exist_ok=True)
    (far_home / "trust" / "policy.toml").write_text(
        '[[rules]]\nrepo = "acme/*"\nsigners = ["exporter"]\n'
    )
    before = state(far_home)
    refused = far("import", str(bundle))
    assert refused.code == 6, refused.err
    assert "needs a valid signature by exporter" in refused.err
    assert "hubd trust add" in refused.err
    assert state(far_home) == before

    (far_home / "trust" / "policy.toml").unlink()  # no rule: no signature needed
    assert far("import", str(bundle)).code == 0


def flip_blob_byte(items: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    info, data = items[-1]
    assert data is not None and info.name.startswith("blobs/")
    items[-1] = (info, data[:10] + bytes([data[10] ^ 1]) + data[11:])


def test_flipped_byte_is_refused(source: Hubd, far: Hubd, far_home: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar"
    export(source, bundle, MODEL)
    bad = rebuild(bundle, tmp_path / "bad.tar", flip_blob_byte)
    before = state(far_home)
    refused = far("import", str(bad))
    assert refused.code == 6 and "sha256 mismatch" in refused.err, refused.err
    assert state(far_home) == before


def test_damaged_blob_fails_the_export(source: Hubd, home: Path, tmp_path: Path) -> None:
    files = source("show", MODEL, "--json").json()["revisions"][0]["files"]
    sha = max(files, key=lambda f: f["size"])["sha256"]
    blob = home / "store" / "blobs" / "sha256" / sha[:2] / sha
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    result = source("export", MODEL, "-o", str(out / "b.tar"))
    assert result.code == 6 and "damaged" in result.err
    assert list(out.iterdir()) == []  # nothing at -o, no temp file either


def _tampered_signature(index: dict[str, Any], items: list[Any]) -> None:
    for n, (info, data) in enumerate(items):
        if info.name.startswith("signatures/") and info.name.endswith(".sig"):
            bundle = json.loads(data)
            sig = bytearray(bundle["dsseEnvelope"]["signatures"][0]["sig"].encode())
            sig[20] = ord("A") if sig[20] != ord("A") else ord("B")
            bundle["dsseEnvelope"]["signatures"][0]["sig"] = sig.decode()
            new = json.dumps(bundle).encode()
            info.size = len(new)
            items[n] = (info, new)
            for s in index["revisions"][0]["signatures"]:
                if info.name.endswith(s["name"]):
                    s["size"], s["sha256"] = len(new), hashlib.sha256(new).hexdigest()


def _swapped_files(index: dict[str, Any], items: list[Any]) -> None:
    files = sorted(index["revisions"][0]["files"], key=lambda f: f["size"])
    a, b = files[-1], files[-2]
    for key in ("sha256", "size", "git_oid", "lfs"):
        a[key], b[key] = b[key], a[key]


@pytest.mark.parametrize("tamper", [_tampered_signature, _swapped_files])
def test_tampering_with_trusted_signatures_is_refused(
    source: Hubd,
    far: Hubd,
    far_home: Path,
    tmp_path: Path,
    tamper: Callable[[dict[str, Any], list[Any]], None],
) -> None:
    """A trusted key's signature that does not verify is fatal, whatever the policy says."""
    bundle = tmp_path / "b.tar"
    export(source, bundle, MODEL)
    pub = tmp_path / "exporter.pub"
    pub.write_text(source("keys", "show", "--public").out)
    assert far("trust", "add", "exporter", str(pub)).code == 0  # trusted, no rule

    def edit(items: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
        index = read_index(bundle)
        tamper(index, items)
        with_index(items, index)

    bad = rebuild(bundle, tmp_path / "bad.tar", edit)
    before = state(far_home)
    refused = far("import", str(bad))
    assert refused.code == 6, refused.err
    assert "does not verify" in refused.err or "does not match the signature" in refused.err
    assert state(far_home) == before


def _index_edit(
    change: Callable[[dict[str, Any]], None], sign: bool = True
) -> Callable[[list[Any]], None]:
    def edit(items: list[Any]) -> None:
        index = json.loads(items[0][1])
        change(index)
        with_index(items, index, sign)

    return edit


def _later_refs(index: dict[str, Any]) -> None:
    """What a replay would need: its refs dated after the far side's."""
    for ref in index["revisions"][0]["refs"]:
        ref["set_at"] = "2100-01-01T00:00:00+00:00"


def _ten_tb_everywhere(index: dict[str, Any]) -> None:
    """The index and the member header agree on 10 TB: more than the disk holds."""
    big = index["blobs"][-1]
    for f in index["revisions"][0]["files"]:
        if f["sha256"] == big["sha256"]:
            f["size"] = 10 * 10**12
    big["size"] = 10 * 10**12


def _ten_tb_member(items: list[Any]) -> None:
    _index_edit(_ten_tb_everywhere)(items)
    info = items[-1][0]
    info.size = 10 * 10**12
    items[-1] = (info, None)  # the header alone: no 10 TB follow


def _header_lies(items: list[Any]) -> None:
    info = items[-1][0]
    info.size = 10 * 10**12
    items[-1] = (info, None)


def _pax_bomb(items: list[Any]) -> None:
    info = items[-1][0]
    info.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}


def _bad_schema(index: dict[str, Any]) -> None:
    del index["revisions"][0]["commit"]


def _unsafe_path_in_index(index: dict[str, Any]) -> None:
    index["revisions"][0]["files"][0]["path"] = "../../escape"


def _wrong_git_oid(index: dict[str, Any]) -> None:
    small = next(f for f in index["revisions"][0]["files"] if not f["lfs"] and f["git_oid"])
    small["git_oid"] = "0" * 40


def _size_as_text(index: dict[str, Any]) -> None:
    file = index["revisions"][0]["files"][0]
    file["size"] = str(file["size"])


def _lfs_as_number(index: dict[str, Any]) -> None:
    index["revisions"][0]["files"][0]["lfs"] = 0


def _names_differ_by_case(index: dict[str, Any]) -> None:
    """Two files no case-insensitive filesystem can hold side by side."""
    files = index["revisions"][0]["files"]
    files.append({**files[0], "path": files[0]["path"].upper()})


def _signature_differs(items: list[Any]) -> None:
    n, (info, data) = next(
        (n, i) for n, i in enumerate(items) if i[0].name.startswith("signatures/")
    )
    items[n] = (info, data.replace(b'"', b"'", 1))


def _first_blob(items: list[Any]) -> int:
    return next(n for n, (info, _) in enumerate(items) if info.name.startswith("blobs/"))


ATTACKS: dict[str, tuple[Callable[[list[Any]], None], int, str]] = {
    "dotdot": (lambda i: i.insert(2, regular("blobs/../../escape", b"x")), 7, "unsafe member"),
    "absolute": (lambda i: i.insert(2, regular("/tmp/escape", b"x")), 7, "unsafe member"),  # noqa: S108 - a name, not a file
    "symlink": (
        lambda i: i.insert(2, special("blobs/" + "0" * 64, tarfile.SYMTYPE, "/etc/passwd")),
        7,
        "is a link",
    ),
    "hardlink": (
        lambda i: i.insert(2, special("blobs/" + "0" * 64, tarfile.LNKTYPE, "hubd-bundle.json")),
        7,
        "is a link",
    ),
    "device": (lambda i: i.insert(2, special("blobs/dev", tarfile.CHRTYPE)), 7, "device file"),
    "directory": (lambda i: i.insert(2, special("blobs", tarfile.DIRTYPE)), 2, "not a regular"),
    "unnamed member": (lambda i: i.append(regular("extra.txt", b"hi")), 2, "not named"),
    "duplicate member": (lambda i: i.append(i[-1]), 2, "appears twice"),
    "missing index": (lambda i: i.pop(0), 2, "missing index"),
    "index not first": (lambda i: i.append(i.pop(0)), 2, "missing index"),
    "index fails schema": (_index_edit(_bad_schema), 2, "missing or unexpected keys: commit"),
    "unsafe path in index": (_index_edit(_unsafe_path_in_index), 7, "unsafe file name"),
    "size as a string": (
        _index_edit(_size_as_text),
        2,
        "bundle index: revisions[0].files[0].size: Input should be a valid integer",
    ),
    "lfs as a number": (
        _index_edit(_lfs_as_number),
        2,
        "bundle index: revisions[0].files[0].lfs: Input should be a valid boolean",
    ),
    "file names differ by case": (
        _index_edit(_names_differ_by_case),
        7,
        "bundle index: revisions[0].files: the file list names",
    ),
    "10 TB header": (_header_lies, 6, "declares 10000000000000 bytes"),
    "10 TB in the index": (_ten_tb_member, 8, "free"),
    "huge pax header": (_pax_bomb, 2, "extended header"),
    "missing blob": (lambda i: i.pop(), 6, "truncated"),
    "wrong git oid": (_index_edit(_wrong_git_oid), 6, "git blob oid"),
    "signature file not as indexed": (_signature_differs, 6, "does not match its sha256"),
    "blob before its signatures": (lambda i: i.insert(2, i.pop(_first_blob(i))), 0, ""),
    "unsigned index": (lambda i: i.pop(1), 2, "the index is not signed"),
    "index edited without the key": (_index_edit(_later_refs, sign=False), 6, "signs another"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_tar_attacks_are_refused(
    source: Hubd, far: Hubd, far_home: Path, tmp_path: Path, attack: str
) -> None:
    edit, code, message = ATTACKS[attack]
    bundle = tmp_path / "b.tar"
    export(source, bundle, MODEL)
    bad = rebuild(bundle, tmp_path / "bad.tar", edit)
    before = state(far_home)
    result = far("import", str(bad))
    assert result.code == code, result.err
    if code == 0:  # order after the index is free: the checks wait for the signatures
        assert far("verify", MODEL).code == 0
        return
    assert message in result.err and "Traceback" not in result.err
    assert state(far_home) == before


def test_bad_indexes_fail_their_schema_too(source: Hubd, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar"
    export(source, bundle, MODEL)
    for change in (_bad_schema, _unsafe_path_in_index):
        index = read_index(bundle)
        change(index)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(index, schema("bundle-index.schema.json"))


@pytest.mark.parametrize("cut", ["mid-blob", "mid-header"])
def test_truncated_bundle_is_refused(
    source: Hubd, far: Hubd, far_home: Path, tmp_path: Path, cut: str
) -> None:
    bundle = tmp_path / "b.tar"
    export(source, bundle, MODEL)
    last = members(bundle)[-1]
    size = last.offset_data + last.size // 2 if cut == "mid-blob" else last.offset + 100
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bundle.read_bytes()[:size])
    before = state(far_home)
    refused = far("import", str(bad))
    assert refused.code == 6 and "truncated" in refused.err, refused.err
    assert state(far_home) == before


def test_incremental_bundle_carries_only_what_the_far_side_lacks(
    source: Hubd, far: Hubd, far_home: Path, hub: FakeHub, tmp_path: Path
) -> None:
    first = tmp_path / "first.tar"
    export(source, first, MODEL)
    trust_exporter(source, far, far_home, tmp_path)  # main moves: only for a trusted exporter
    assert far("import", str(first)).code == 0
    listing_file = tmp_path / "listing.json"
    listed = far("listing", "-o", str(listing_file), "--json").json()
    listing = json.loads(listing_file.read_text())
    validate("listing.schema.json", listing)
    assert listed["node"] == listing["node"] == "far-node"

    files = tiny_model_files(seed=0)
    files["NOTES.md"] = b"one more file in a new commit\n"
    hub.add_repo(MODEL, files)
    assert source("mirror", MODEL, "-q").code == 0
    assert source("mirror", LORA, "-q").code == 0
    old = next(r["commit"] for r in listing["revisions"])
    both = tmp_path / "both.tar"
    exported = export(source, both, MODEL, f"{MODEL}@{old}", LORA, "--since", str(listing_file))
    assert exported["since"] == "far-node"
    assert exported["skipped_revisions"] == [{"repo": MODEL, "commit": old}]
    carried = {m.name.removeprefix("blobs/") for m in members(both) if m.name.startswith("blobs/")}
    assert carried and not carried & set(listing["blobs"])
    new_model = source("show", MODEL, "--json").json()["revisions"][-1]
    notes = next(f["sha256"] for f in new_model["files"] if f["path"] == "NOTES.md")
    assert notes in carried  # the only new blob of the new commit
    assert not {f["sha256"] for f in new_model["files"] if f["path"] != "NOTES.md"} & carried
    index = read_index(both)
    validate("bundle-index.schema.json", index)
    assert index["since"] == "far-node"

    imported = far("import", str(both), "--json").json()
    assert {(r["repo"], r["status"]) for r in imported["revisions"]} == {
        (MODEL, "imported"),
        (LORA, "imported"),
    }
    assert imported["blobs_added"] == len(carried)
    assert far("verify").code == 0
    refs = far("show", MODEL, "--json").json()["refs"]
    assert refs == {"main": new_model["commit"]}


def test_incremental_bundle_needs_the_listed_blobs(
    source: Hubd, hubd: Hubd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made --since another node's listing, it is refused where those blobs are missing."""
    listing_file = tmp_path / "listing.json"
    assert source("listing", "-o", str(listing_file)).code == 0  # this node holds every blob
    bundle = tmp_path / "b.tar"
    exported = export(source, bundle, MODEL, "--since", str(listing_file))
    assert exported["skipped_revisions"] and not exported["revisions"]
    listing = json.loads(listing_file.read_text())
    listing["revisions"] = []  # pretend the far side lacks the revision but has the blobs
    listing_file.write_text(json.dumps(listing))
    exported = export(source, bundle, MODEL, "--since", str(listing_file))
    assert exported["blobs"] == 0 and exported["revisions"]
    monkeypatch.setenv("HUBD_NODE_NAME", "empty-node")
    refused = hubd("--home", str(tmp_path / "empty"), "import", str(bundle))
    assert refused.code == 2 and "neither in the bundle nor in this store" in refused.err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("commit", "ABC", "revisions[0].commit: not a commit id"),
        ("repo", "../etc", "revisions[0].repo: not a repo id"),
        ("refs", "main", "revisions[0].refs: Input should be a valid array"),
    ],
)
def test_malformed_listing_is_refused_naming_the_field(
    source: Hubd, tmp_path: Path, field: str, value: str, message: str
) -> None:
    listing_file = tmp_path / "listing.json"
    assert source("listing", "-o", str(listing_file)).code == 0
    listing = json.loads(listing_file.read_text())
    listing["revisions"][0][field] = value
    listing_file.write_text(json.dumps(listing))
    refused = source("export", MODEL, "-o", str(tmp_path / "b.tar"), "--since", str(listing_file))
    assert refused.code == 2, refused.err
    assert f"{listing_file}: listing: {message}" in refused.err and "Traceback" not in refused.err
    assert not (tmp_path / "b.tar").exists()


def test_replayed_old_ref_is_refused(
    source: Hubd, far: Hubd, far_home: Path, hub: FakeHub, tmp_path: Path
) -> None:
    old = tmp_path / "old.tar"
    export(source, old, MODEL)
    hub.add_repo(MODEL, tiny_model_files(seed=5))
    assert source("mirror", MODEL, "-q").code == 0
    new = tmp_path / "new.tar"
    export(source, new, MODEL)

    assert far("import", str(old)).code == 0
    before = state(far_home)
    untrusted = far("import", str(new))  # ref times are believed only from a trusted exporter
    assert untrusted.code == 6 and "only an exporter this node trusts may move it" in untrusted.err
    assert state(far_home) == before
    trust_exporter(source, far, far_home, tmp_path)
    assert far("import", str(new)).code == 0  # later than the old bundle's ref: main moves on
    main = far("show", MODEL, "--json").json()["refs"]["main"]
    assert main == read_index(new)["revisions"][0]["commit"]

    before = state(far_home)
    replayed = far("import", str(old))
    assert replayed.code == 6 and "refusing to replay an older revision" in replayed.err
    assert "ref main" in replayed.err
    assert state(far_home) == before


def test_failure_while_recording_is_undone(
    source: Hubd,
    far: Hubd,
    far_home: Path,
    hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure after blobs moved and one revision was recorded leaves the far side as it was."""
    first = tmp_path / "first.tar"
    export(source, first, MODEL)
    trust_exporter(source, far, far_home, tmp_path)  # main moves: only for a trusted exporter
    assert far("import", str(first)).code == 0
    hub.add_repo(MODEL, tiny_model_files(seed=7))
    assert source("mirror", MODEL, "-q").code == 0
    assert source("mirror", LORA, "-q").code == 0
    second = tmp_path / "second.tar"
    export(source, second, MODEL, LORA)

    real = hubd.bundle.importer.record_snapshot
    calls: list[str] = []

    def fail_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].repo_id)
        recorded = real(*args, **kwargs)
        if len(calls) == 2:
            raise StoreError("disk full (injected)")
        return recorded

    monkeypatch.setattr(hubd.bundle.importer, "record_snapshot", fail_second)
    before = state(far_home)
    failed = far("import", str(second))
    assert failed.code == 8 and "injected" in failed.err
    assert calls == [MODEL, LORA]
    assert state(far_home) == before

    monkeypatch.setattr(hubd.bundle.importer, "record_snapshot", real)
    assert far("import", str(second)).code == 0
    assert far("verify").code == 0


class Recorded:
    """A Progress that keeps the events (hubd.sources.base.Progress)."""

    def __init__(self) -> None:
        self.total = 0
        self.advanced = 0
        self.ended = False

    def begin(self, files: int, total_bytes: int) -> None:
        self.total = total_bytes

    def file_started(self, path: str, size: int, offset: int) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        self.advanced += nbytes

    def file_done(self, path: str) -> None:
        pass

    def end(self) -> None:
        self.ended = True


def test_export_and_import_report_progress(source: Hubd, far_home: Path, tmp_path: Path) -> None:
    ctx = Context.open(load_settings())
    bundle = tmp_path / "b.tar"
    out = Recorded()
    exported = export_bundle(ctx, [RepoRef.parse(MODEL)], bundle, progress=out)
    ctx.close()
    assert out.ended and out.total == out.advanced == exported.bytes > 0
    far_ctx = Context.open(load_settings({"HUBD_HOME": str(far_home)}))
    into = Recorded()
    import_bundle(far_ctx, bundle, progress=into)
    far_ctx.close()
    assert into.ended and into.total == into.advanced == exported.bytes
