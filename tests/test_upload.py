"""Publishing to a hubd node with the stock huggingface_hub client (the Hub's write API).

create_repo, upload_folder (a LoRA adapter: LFS and regular files), upload_file, create_commit
with deletions, branches and tags, through HfApi and the `hf` CLI against a loopback daemon;
commit ids checked against the `git` binary; every refusal (tampered LFS bytes, a size lie, a
stale parentCommit, no token, a read token, a token outside its repo globs, path traversal,
garbage ndjson, a denied license) leaves nothing visible. A second node then mirrors what was
pushed and checks its signatures and provenance.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from cryptography.hazmat.primitives.asymmetric import ec
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from support.modelgen import tiny_lora_files, write_files
from test_hub_repo_api import request
from test_provenance import statements, trust
from test_server import node, serving

from hubd.cluster.tokens import create_token
from hubd.config import Settings
from hubd.context import Context
from hubd.gitobjects import Signature, commit_id, tree_id
from hubd.hashes import git_blob_sha1, lfs_pointer
from hubd.ops.mirror import mirror
from hubd.ops.parts import MULTIPART_MIN, PART_SIZE, parts_dir
from hubd.ops.verify import verify_store
from hubd.refs import RepoRef
from hubd.server import upload
from hubd.server.app import create_app
from hubd.trust import oms as signing
from hubd.trust.keys import node_key, stored_signatures

REPO = "acme/support-lora"
HF = str(Path(os.environ.get("VIRTUAL_ENV", "/work/main/.venv")) / "bin" / "hf")


@pytest.fixture(autouse=True)
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_DISABLE_XET=1, as the README tells users (read once, at import, by the client)."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")


@pytest.fixture
def daemon(ctx: Context) -> Iterator[tuple[str, str]]:
    """(url, write token named alice) of a loopback hubd."""
    _, secret = create_token(ctx, "write", "alice")
    with serving(ctx) as url:
        yield url, secret


def api(url: str, token: str | None) -> HfApi:
    return HfApi(endpoint=url, token=token or False)


def test_commit_ids_are_the_ones_git_computes(tmp_path: Path) -> None:
    files = {"README.md": b"# hi\n", "a/b/c.txt": b"deep\n", "a-b": b"dash\n", "a.txt": b"x"}
    lfs = b"not really weights" * 100
    for path, data in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    pointer = lfs_pointer(hashlib.sha256(lfs).hexdigest(), len(lfs))
    (tmp_path / "a" / "model.safetensors").write_bytes(pointer)
    oids = {p: git_blob_sha1(d) for p, d in files.items()}
    oids["a/model.safetensors"] = git_blob_sha1(pointer)

    def git(*args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=tmp_path,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    tree = git("write-tree")
    assert tree_id(oids) == tree
    who = {
        "GIT_AUTHOR_NAME": "alice",
        "GIT_AUTHOR_EMAIL": "alice@node-a",
        "GIT_COMMITTER_NAME": "alice",
        "GIT_COMMITTER_EMAIL": "alice@node-a",
        "GIT_AUTHOR_DATE": "1700000000 +0000",
        "GIT_COMMITTER_DATE": "1700000000 +0000",
    }
    first = git("commit-tree", tree, "-m", "first", env=who)
    second = git("commit-tree", tree, "-p", first, "-m", "second\n\nwhy", env=who)
    me = Signature("alice", "alice@node-a", 1700000000)
    assert commit_id(tree, [], me, "first") == first
    assert commit_id(tree, [first], me, "second\n\nwhy") == second


def test_upload_folder_file_commit_branch_tag_then_a_second_node_mirrors(
    ctx: Context, daemon: tuple[str, str], tmp_path: Path, settings: Settings
) -> None:
    url, token = daemon
    hf = api(url, token)
    assert not hf.repo_exists(REPO)
    created = hf.create_repo(REPO)
    assert created.repo_id == REPO and hf.repo_exists(REPO)
    hf.create_repo(REPO, exist_ok=True)  # 409, which the client takes as "already there"
    out = tmp_path / "out"
    files = tiny_lora_files(base_model="acme/tiny-llama")
    files["big.bin"] = os.urandom(11 * 1024 * 1024)  # LFS by size and suffix
    files["notes/eval.txt"] = b"loss 0.1\n"
    write_files(out, files)
    info = hf.upload_folder(repo_id=REPO, folder_path=out, commit_message="adapter v1")
    first = info.oid
    listing = {f.rfilename: f for f in hf.model_info(REPO, files_metadata=True).siblings or []}
    assert set(listing) == {*files, ".gitattributes"}
    assert listing["adapter_model.safetensors"].lfs is not None
    assert listing["notes/eval.txt"].lfs is None
    got = hf.hf_hub_download(REPO, "big.bin", cache_dir=tmp_path / "cache")
    assert Path(got).read_bytes() == files["big.bin"]

    second = hf.upload_file(
        path_or_fileobj=b"more notes\n", path_in_repo="notes/more.txt", repo_id=REPO
    ).oid
    third = hf.create_commit(
        REPO,
        [
            CommitOperationDelete("big.bin"),
            CommitOperationDelete("notes/"),
            CommitOperationAdd("config.txt", b"a=1\n"),
        ],
        commit_message="drop the big file",
        parent_commit=second,
    ).oid
    commits = hf.list_repo_commits(REPO)
    assert [c.commit_id for c in commits][:3] == [third, second, first]
    assert commits[0].title == "drop the big file" and commits[0].authors == ["alice"]
    names = {f.rfilename for f in hf.model_info(REPO).siblings or []}
    assert "big.bin" not in names and "notes/more.txt" not in names and "config.txt" in names

    hf.create_branch(REPO, branch="dev", revision=first)
    dev = hf.upload_file(
        path_or_fileobj=b"dev\n", path_in_repo="dev.txt", repo_id=REPO, revision="dev"
    ).oid
    hf.create_tag(REPO, tag="release", revision=third)
    refs = hf.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": third, "dev": dev}
    assert {t.name: t.target_commit for t in refs.tags} == {"release": third}
    with pytest.raises(HfHubHTTPError) as conflict:
        hf.create_branch(REPO, branch="dev")
    assert conflict.value.response.status_code == 409
    hf.delete_tag(REPO, tag="release")
    hf.delete_branch(REPO, branch="dev")
    assert [b.name for b in hf.list_repo_refs(REPO).branches] == ["main"]

    status, _, body = request(url, "GET", f"/api/hubd/models/{REPO}/revision/main/attestations")
    attested = json.loads(body)
    assert status == 200 and attested["provenance"][-1]["source"] == "uploaded by alice"
    assert token not in body.decode()
    (made,) = statements(ctx, REPO, third)
    assert made["predicate"]["buildDefinition"]["externalParameters"]["uploader"] == "alice"
    assert made["predicate"]["runDetails"]["builder"]["id"] == "urn:hubd:node:test-node"

    other = node(settings, tmp_path, "node-b", url)
    try:  # node-b requires node-a's signature on acme/*: what it mirrors must carry it
        trust(other, "node-a", node_key(ctx).public_key(), "acme/*")
        assert asyncio.run(mirror(other, RepoRef.parse(REPO))).commit == third
        docs = statements(other, REPO, third)
        assert [d["predicate"]["runDetails"]["builder"]["id"] for d in docs] == [
            "urn:hubd:node:test-node",
            "urn:hubd:node:node-b",
        ]
        assert docs[0]["predicate"]["buildDefinition"]["externalParameters"]["uploader"] == "alice"
        assert len(list(stored_signatures(other, REPO, third))) == 2
        assert not verify_store(other, REPO).damaged
    finally:
        other.close()


def test_hf_cli_repo_create_and_upload(daemon: tuple[str, str], tmp_path: Path) -> None:
    url, token = daemon
    env = {**os.environ, "HF_ENDPOINT": url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1"}
    out = tmp_path / "out"
    write_files(out, tiny_lora_files(base_model="acme/tiny-llama"))

    def hf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HF, *args], env=env, capture_output=True, text=True, timeout=120)

    created = hf("repos", "create", REPO)
    assert created.returncode == 0, created.stderr
    uploaded = hf("upload", REPO, str(out))
    assert uploaded.returncode == 0, uploaded.stderr
    on_dev = hf("upload", REPO, str(out / "README.md"), "README.md", "--revision", "dev")
    assert on_dev.returncode == 0, on_dev.stderr
    refs = api(url, token).list_repo_refs(REPO)
    assert sorted(b.name for b in refs.branches) == ["dev", "main"]
    assert {f.rfilename for f in api(url, None).model_info(REPO).siblings or []} >= {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
    }


def _batch(
    url: str, token: str, oid: str, size: int, transfers: tuple[str, ...] = ("basic",)
) -> dict[str, Any]:
    objects = [{"oid": oid, "size": size}]
    body = {"operation": "upload", "transfers": list(transfers), "objects": objects}
    status, _, answer = request(
        url,
        "POST",
        f"/{REPO}.git/info/lfs/objects/batch",
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    assert status == 200, answer
    answered: list[dict[str, Any]] = json.loads(answer)["objects"]
    return answered[0]


def test_tampered_and_short_lfs_uploads_leave_nothing(
    ctx: Context, daemon: tuple[str, str]
) -> None:
    url, token = daemon
    api(url, token).create_repo(REPO)
    data = b"weights" * 1000
    oid = hashlib.sha256(data).hexdigest()
    upload = _batch(url, token, oid, len(data))["actions"]["upload"]["href"]
    path = upload.removeprefix(url)
    tampered = b"W" + data[1:]
    status, _, body = request(url, "PUT", path, {}, tampered)
    assert status == 400 and b"sha256 mismatch" in body, body
    assert not ctx.store.has_blob(oid) and not list(ctx.store.tmp_dir.glob("*.partial"))
    status, _, body = request(url, "PUT", path, {}, data[:-1])
    assert status == 400 and b"bytes" in body
    assert not ctx.store.has_blob(oid) and not list(ctx.store.tmp_dir.glob("*.partial"))
    status, _, body = request(url, "PUT", path + "0", {}, data)  # a forged signature
    assert status == 401 and not ctx.store.has_blob(oid)
    status, _, _ = request(url, "PUT", path, {}, data)
    assert status == 200 and ctx.store.has_blob(oid, len(data))
    assert "actions" not in _batch(url, token, oid, len(data))  # stored: nothing to upload
    # An lfsFile the node never received is refused; the branch does not move.
    head = api(url, token).model_info(REPO).sha
    missing = hashlib.sha256(b"never sent").hexdigest()
    status, _, body = _commit(
        url,
        token,
        [
            {
                "key": "lfsFile",
                "value": {"path": "x.safetensors", "algo": "sha256", "oid": missing, "size": 10},
            }
        ],
    )
    assert status == 400 and b"was not uploaded" in body
    assert api(url, token).model_info(REPO).sha == head


def _commit(
    url: str, token: str | None, operations: list[dict[str, object]], raw: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    lines = [{"key": "header", "value": {"summary": "hostile", "description": ""}}, *operations]
    body = raw if raw is not None else b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, answer_headers, answer = request(
        url, "POST", f"/api/models/{REPO}/commit/main", headers, body
    )
    return status, dict(answer_headers), answer


def test_hostile_commits_are_refused_and_nothing_moves(
    ctx: Context, daemon: tuple[str, str]
) -> None:
    url, token = daemon
    hf = api(url, token)
    first = hf.create_repo(REPO) and hf.model_info(REPO).sha
    second = hf.upload_file(path_or_fileobj=b"1\n", path_in_repo="a.txt", repo_id=REPO).oid
    with pytest.raises(HfHubHTTPError) as stale:
        hf.upload_file(
            path_or_fileobj=b"2\n", path_in_repo="a.txt", repo_id=REPO, parent_commit=first
        )
    assert stale.value.response.status_code == 409
    b64 = base64.b64encode(b"x").decode()
    hostile = [
        [{"key": "file", "value": {"path": "../../etc/passwd", "content": b64}}],
        [{"key": "file", "value": {"path": "/abs", "content": b64}}],
        [{"key": "file", "value": {"path": "ok.txt", "content": "not base64!"}}],
        [{"key": "rename", "value": {"path": "a.txt"}}],
        [{"key": "deletedFile", "value": {"path": "nope.txt"}}],
        [{"key": "file", "value": {"path": "a.txt/b", "content": b64}}],
    ]
    for operations in hostile:
        status, headers, body = _commit(url, token, operations)
        assert 400 <= status < 500 and headers.get("X-Error-Code"), (operations, body)
    for raw in (
        b"{not json\n",
        b"[1, 2]\n",
        b'{"key": "file", "value": {}}\n',
        b"x" * (17 * 1024 * 1024),
        b'{"key":"header","value":{"summary":""}}\n',
    ):
        status, _, body = _commit(url, token, [], raw)
        assert status == 400, body
    status, _, _ = _commit(url, None, [])
    assert status == 401
    _, read_only = create_token(ctx, "read", "bob")
    status, _, body = _commit(url, read_only, [])
    assert status == 403 and b"read-only" in body
    _, elsewhere = create_token(ctx, "write", "carol", ["other/*"])
    status, _, body = _commit(url, elsewhere, [])
    assert status == 403 and b"other/*" in body
    with pytest.raises(HfHubHTTPError, match="needs a token with write scope") as anonymous:
        api(url, None).create_repo("acme/anonymous")
    assert anonymous.value.response.status_code == 401
    status, headers, _ = request(
        url, "GET", f"/api/models/{REPO}/xet-write-token/main", {"Authorization": f"Bearer {token}"}
    )
    assert status == 400 and "HF_HUB_DISABLE_XET=1" in headers["X-Error-Message"]
    with pytest.raises(HfHubHTTPError, match="pull requests"):
        hf.upload_file(path_or_fileobj=b"pr\n", path_in_repo="pr.txt", repo_id=REPO, create_pr=True)
    with pytest.raises(RepositoryNotFoundError):
        hf.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id="acme/never-made")
    assert hf.model_info(REPO).sha == second
    assert [c.commit_id for c in hf.list_repo_commits(REPO)] == [second, first]


@pytest.fixture
def no_non_commercial(policy: Callable[[str], Path]) -> Path:
    """A policy denying non-commercial licenses, in place before the node starts."""
    return policy(
        'version = 1\ndefault = "allow"\n[[rules]]\nclass = "non-commercial"\n'
        'action = "deny"\nreason = "products need commercial terms"\n'
    )


def test_a_denied_license_is_refused_before_it_is_visible(
    no_non_commercial: Path, daemon: tuple[str, str]
) -> None:
    url, token = daemon
    hf = api(url, token)
    hf.create_repo(REPO)
    head = hf.model_info(REPO).sha
    card = b"---\nlicense: cc-by-nc-4.0\n---\n# research only\n"
    with pytest.raises(HfHubHTTPError) as denied:
        hf.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=REPO)
    assert denied.value.response.status_code == 403
    assert "rule #1" in denied.value.response.headers["X-Error-Message"]
    assert hf.model_info(REPO).sha == head


def test_hubd_add_to_a_node_publishes_over_http(
    daemon: tuple[str, str], tmp_path: Path, hubd: Callable[..., Result]
) -> None:
    url, token = daemon
    out = tmp_path / "out"
    write_files(out, tiny_lora_files(base_model="acme/tiny-llama"))
    first = hubd("add", str(out), "--repo", REPO, "--to", url, "--token", token, "--json").json()
    assert first["changed"] == 3 and first["bytes_uploaded"] > 0
    again = hubd("add", str(out), "--repo", REPO, "--to", url, "--token", token, "--json").json()
    assert again["up_to_date"] and again["commit"] == first["commit"]
    (out / "README.md").unlink()
    third = hubd("add", str(out), "--repo", REPO, "--to", url, "--token", token, "--json").json()
    assert third["deleted"] == 1
    hf = api(url, None)
    assert {f.rfilename for f in hf.model_info(REPO).siblings or []} == {
        ".gitattributes",
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    commits = hf.list_repo_commits(REPO)
    assert [c.commit_id for c in commits[:2]] == [third["commit"], first["commit"]]
    assert {a for c in commits for a in c.authors} == {"alice"}
    refused = hubd("add", str(out), "--repo", REPO, "--to", url, "--token", "hubd_wrong")
    assert refused.code == 4 and "invalid or revoked token" in refused.err


UPLOAD_SCRIPT = """
import sys
from huggingface_hub import HfApi
url, token, path, repo = sys.argv[1:]
HfApi(endpoint=url, token=token).upload_file(
    path_or_fileobj=path, path_in_repo="big.safetensors", repo_id=repo
)
"""


def test_multipart_upload_killed_mid_way_then_resumed(
    ctx: Context, daemon: tuple[str, str], tmp_path: Path
) -> None:
    url, token = daemon
    api(url, token).create_repo(REPO)
    big = tmp_path / "big.safetensors"
    data = os.urandom(100 * 1000 * 1000)  # 6 parts of 16 MiB
    big.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1"}
    args = [sys.executable, "-c", UPLOAD_SCRIPT, url, token, str(big), REPO]
    staged = parts_dir(ctx.store, sha256)
    client = subprocess.Popen(args, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(staged.glob("[0-9]"))) < 2 and time.monotonic() < deadline:
            assert client.poll() is None, "the upload finished before it could be killed"
            time.sleep(0.01)
        client.kill()  # SIGKILL, mid-way through the parts
    finally:
        client.wait(10)
    assert 2 <= len(list(staged.glob("[0-9]"))) < 6
    assert not ctx.store.has_blob(sha256)
    assert "big.safetensors" not in {
        f.rfilename for f in api(url, None).model_info(REPO).siblings or []
    }
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ctx.store.has_blob(sha256, len(data)) and not staged.exists()
    (entry,) = [
        f
        for f in api(url, None).model_info(REPO, files_metadata=True).siblings or []
        if f.rfilename == "big.safetensors"
    ]
    assert entry.lfs is not None and entry.lfs.sha256 == sha256


def test_a_multipart_upload_with_a_tampered_part_keeps_nothing(
    ctx: Context, daemon: tuple[str, str]
) -> None:
    url, token = daemon
    api(url, token).create_repo(REPO)
    size = MULTIPART_MIN
    oid = hashlib.sha256(b"\0" * size).hexdigest()
    upload = _batch(url, token, oid, size, ("basic", "multipart"))["actions"]["upload"]
    header = upload["header"]
    etags = []
    for n in range(1, len(header)):
        length = min(PART_SIZE, size - (n - 1) * PART_SIZE)
        body = b"\0" * length if n > 1 else b"\1" + b"\0" * (length - 1)  # part 1 tampered
        status, headers, answer = request(url, "PUT", header[str(n)].removeprefix(url), {}, body)
        assert status == 200, answer
        etags.append({"partNumber": n, "etag": headers["ETag"]})
    status, _, answer = request(
        url,
        "POST",
        upload["href"].removeprefix(url),
        {"Content-Type": "application/json"},
        json.dumps({"oid": oid, "parts": etags}).encode(),
    )
    assert status == 400 and b"sha256 mismatch" in answer, answer
    assert not ctx.store.has_blob(oid) and not parts_dir(ctx.store, oid).exists()
    assert not list(ctx.store.tmp_dir.glob("*.partial"))


def test_a_trust_rule_needs_a_valid_model_sig_in_the_push(
    ctx: Context, daemon: tuple[str, str], tmp_path: Path
) -> None:
    url, token = daemon
    hf = api(url, token)
    hf.create_repo(REPO)
    key = ec.generate_private_key(ec.SECP256R1())
    trust(ctx, "acme-release", key.public_key(), "acme/*")
    files = tiny_lora_files(base_model="acme/tiny-llama")
    out = tmp_path / "out"
    write_files(out, files)
    with pytest.raises(HfHubHTTPError) as unsigned:
        hf.upload_folder(repo_id=REPO, folder_path=out)
    assert unsigned.value.response.status_code == 403
    assert "needs a valid model.sig by acme-release" in unsigned.value.response.text
    digests = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}  # .git* not signed
    (out / "model.sig").write_bytes(signing.sign(key, "support-lora", digests))
    (out / "README.md").write_bytes(files["README.md"] + b"changed after signing\n")
    with pytest.raises(HfHubHTTPError, match=r"README\.md changed"):
        hf.upload_folder(repo_id=REPO, folder_path=out)
    (out / "README.md").write_bytes(files["README.md"])
    commit = hf.upload_folder(repo_id=REPO, folder_path=out).oid
    (statement,) = statements(ctx, REPO, commit)
    upstream = statement["predicate"]["buildDefinition"]["internalParameters"]
    assert upstream["upstreamSignature"]["signer"] == "acme-release"


def test_an_auth_required_node_takes_uploads_on_its_signed_urls(
    settings: Settings, tmp_path: Path
) -> None:
    with Context.open(settings.model_copy(update={"auth_required": True})) as locked:
        _, token = create_token(locked, "write", "alice")
        with serving(locked) as url:
            hf = api(url, token)
            hf.create_repo(REPO)
            weights = os.urandom(1024 * 1024)
            hf.upload_file(path_or_fileobj=weights, path_in_repo="w.safetensors", repo_id=REPO)
            got = hf.hf_hub_download(REPO, "w.safetensors", cache_dir=tmp_path / "cache")
            assert Path(got).read_bytes() == weights
            status, _, _ = request(url, "GET", f"/api/models/{REPO}")
            assert status == 401


def test_two_commits_on_the_same_head_one_wins_the_other_is_a_409(
    daemon: tuple[str, str],
) -> None:
    url, token = daemon
    hf = api(url, token)
    hf.create_repo(REPO)
    head = hf.model_info(REPO).sha
    assert head is not None

    def push(n: int) -> str | int:
        try:
            return hf.create_commit(
                REPO,
                [CommitOperationAdd(f"f{n}.txt", b"%d\n" % n)],
                commit_message=f"commit {n}",
                parent_commit=head,
            ).oid
        except HfHubHTTPError as exc:
            return exc.response.status_code

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(push, range(4)))
    won = [o for o in outcomes if isinstance(o, str)]
    assert len(won) == 1 and sorted(o for o in outcomes if isinstance(o, int)) == [409] * 3
    assert [c.commit_id for c in hf.list_repo_commits(REPO)] == [won[0], head]


def test_pushed_commit_ids_are_what_git_computes_for_the_same_history(
    daemon: tuple[str, str], tmp_path: Path
) -> None:
    """Every commit's files, rebuilt in a git repo (LFS files as their pointers), give the id."""
    url, token = daemon
    hf = api(url, token)
    hf.create_repo(REPO)
    out = tmp_path / "out"
    write_files(out, tiny_lora_files(base_model="acme/tiny-llama"))
    hf.upload_folder(
        repo_id=REPO, folder_path=out, commit_message="adapter", commit_description="why"
    )
    hf.create_commit(
        REPO,
        [CommitOperationDelete("README.md"), CommitOperationAdd("docs/a.txt", b"a\n")],
        commit_message="move the card",
    )
    history = tmp_path / "history.git"  # one object store, so each commit's parent is in it
    subprocess.run(["git", "init", "-q", "--bare", str(history)], check=True, timeout=30)
    parent: list[str] = []
    for n, pushed in enumerate(reversed(hf.list_repo_commits(REPO))):
        tree = tmp_path / f"git-{n}"
        for sibling in (
            hf.model_info(REPO, revision=pushed.commit_id, files_metadata=True).siblings or []
        ):
            target = tree / sibling.rfilename
            target.parent.mkdir(parents=True, exist_ok=True)
            if sibling.lfs is not None:
                target.write_bytes(lfs_pointer(sibling.lfs.sha256, sibling.lfs.size))
            else:
                got = hf.hf_hub_download(
                    REPO, sibling.rfilename, revision=pushed.commit_id, cache_dir=tmp_path / "cache"
                )
                target.write_bytes(Path(got).read_bytes())
        when = f"{int(pushed.created_at.timestamp())} +0000"
        env = {
            **os.environ,
            "HOME": str(tmp_path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "alice",
            "GIT_AUTHOR_EMAIL": "alice@test-node",
            "GIT_COMMITTER_NAME": "alice",
            "GIT_COMMITTER_EMAIL": "alice@test-node",
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
            "GIT_DIR": str(history),
            "GIT_WORK_TREE": str(tree),
            "GIT_INDEX_FILE": str(tmp_path / f"index-{n}"),
        }

        def git(*args: str, env: dict[str, str] = env) -> str:
            done = subprocess.run(
                ["git", *args], env=env, capture_output=True, text=True, check=True, timeout=30
            )
            return done.stdout.strip()

        git("add", "-A")
        message = pushed.title + (f"\n\n{pushed.message}" if pushed.message else "")
        parents = [arg for p in parent for arg in ("-p", p)]
        assert git("commit-tree", git("write-tree"), *parents, "-m", message) == pushed.commit_id
        parent = [pushed.commit_id]
    assert len(parent) == 1 and n == 2


def test_upload_urls_are_signed_with_the_fleets_key(settings: Settings, tmp_path: Path) -> None:
    """Daemons on one catalog share the upload-URL key (fleet_secrets): a URL one hands out
    works on another behind the same address, and after a restart; another catalog's differ."""
    shared = f"sqlite:///{tmp_path / 'shared.db'}"

    def key(home: str, catalog: str) -> bytes:
        node = settings.model_copy(
            update={"home": tmp_path / home, "store_dir": tmp_path / home / "store",
                    "catalog_url": catalog}
        )  # fmt: skip
        with Context.open(node) as ctx:
            return create_app(ctx)[upload.UPLOAD_KEY]

    first = key("a", shared)
    assert len(first) == 32
    assert key("b", shared) == first == key("a", shared)
    assert key("c", f"sqlite:///{tmp_path / 'other.db'}") != first
