"""hubd mirror against a malicious upstream: every field a source sends is checked.

Each case is an attack of SECURITY-FINDINGS (its id in the test id) served by tests/hostile.py,
which shares no code with hubd. Every refusal must be a typed error with the right exit code, a
message naming what was wrong, no traceback, nothing written outside the store and nothing
visible in it; `tests.hostile.check_store` then finds the store consistent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from hostile import COMMIT, HostileHub, Scenario, check_store, honest, sibling

README = b"---\nlicense: apache-2.0\n---\nhi\n"
CONFIG = b'{"model_type": "llama"}\n'
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def evil(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileHub]:
    with HostileHub() as hub:
        monkeypatch.setenv("HUBD_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HUBD_TIMEOUT", "5")
        yield hub


def _info(siblings: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "evil/x", "sha": COMMIT, "siblings": siblings} | extra


def _base(**override: Any) -> list[dict[str, Any]]:
    return [sibling("README.md", README), sibling("config.json", CONFIG, **override)]


def _escape(tmp_path: Path, name: str) -> str:
    """A relative path from anywhere in the store to ``tmp_path/name``."""
    return "../" * 24 + str(tmp_path / name).lstrip("/")


# (id, model info body given tmp_path, expected exit code, words the message must hold)
Case = tuple[str, Callable[[Path], Any], int, str]
CASES: list[Case] = [
    # R1: the commit id is a path (M61-M67, M79)
    ("M61-short", lambda t: _info(_base(), sha="abc123"), 5, "sha"),
    ("M61-upper", lambda t: _info(_base(), sha="C0FFEE" * 6 + "C0FF"), 5, "sha"),
    ("M61-nonhex", lambda t: _info(_base(), sha="g" * 40), 5, "sha"),
    ("M62-escape", lambda t: _info(_base(), sha=_escape(t, "commit-escape")), 5, "sha"),
    ("M63-other-repo", lambda t: _info(_base(), sha=f"../honest/{OTHER}"), 5, "sha"),
    (
        "M79-config",
        lambda t: _info([sibling("hubd.toml", b"[auth]\n")], sha="../../../.."),
        5,
        "sha",
    ),
    ("M65-int", lambda t: _info(_base(), sha=1234), 5, "sha"),
    ("M66-newline", lambda t: _info(_base(), sha=COMMIT + "\n"), 5, "sha"),
    ("M67-long", lambda t: _info(_base(), sha="a" * 5000), 5, "sha"),
    # R2: lfs.sha256 is a path (M56-M59), R4: nothing to verify against (M53, M54)
    (
        "M56-sha-escape",
        lambda t: _info(_base(lfs={"sha256": _escape(t, "sha-escape"), "size": len(CONFIG)})),
        5,
        "sha256",
    ),
    (
        "M58-etc-passwd",
        lambda t: _info(_base(lfs={"sha256": "../" * 12 + "etc/passwd", "size": len(CONFIG)})),
        5,
        "sha256",
    ),
    (
        "M59-sha-int",
        lambda t: _info(_base(lfs={"sha256": 12345, "size": len(CONFIG)})),
        5,
        "sha256",
    ),
    ("M53-no-blobid", lambda t: _info(_base(blobId=None)), 5, "no digest"),
    (
        "M54-sha-empty",
        lambda t: _info(_base(blobId=None, lfs={"sha256": "", "size": 24})),
        5,
        "sha256",
    ),
    ("M60-blobid-escape", lambda t: _info(_base(blobId="../" * 8 + "x")), 5, "blobId"),
    # R6: hostile shapes (M34, M43, M44, M47, M48, M68-M72)
    ("M68-not-json", lambda t: b"<html>not json", 5, "not JSON"),
    ("M69-list", lambda t: [1, 2, 3], 5, "list"),
    ("M70-siblings-dict", lambda t: _info({"a": 1}), 5, "siblings"),  # type: ignore[arg-type]
    ("M44-no-name", lambda t: _info(_base(rfilename=None)), 5, "rfilename"),
    ("M43-name-int", lambda t: _info(_base(rfilename=12345)), 5, "rfilename"),
    ("M47-size-string", lambda t: _info(_base(size="12")), 5, "size"),
    ("M48-size-float", lambda t: _info(_base(size=3.5)), 5, "size"),
    ("M48-size-bool", lambda t: _info(_base(size=True)), 5, "size"),
    ("M45-size-negative", lambda t: _info(_base(size=-1)), 5, "size"),
    (
        "M50-lfs-size",
        lambda t: _info(_base(lfs={"sha256": hashlib.sha256(CONFIG).hexdigest(), "size": 3})),
        5,
        "LFS pointer",
    ),
    (
        "M72-card-deep",
        lambda t: (
            b'{"sha": "%s", "siblings": [], "cardData": ' % COMMIT.encode()
            + b'{"a": ' * 100_000
            + b"1"
            + b"}" * 100_001
        ),
        5,
        "",
    ),
    ("M72-card-deep-ok-json", lambda t: _info(_base(), cardData=_nest(40)), 5, "cardData"),
    ("no-siblings", lambda t: _info([]), 5, "siblings"),
    # Names (M34, M35, M39-M42): refused before anything is written, exit 7
    ("M34-duplicate", lambda t: _info([*_base(), sibling("config.json", CONFIG)]), 7, "twice"),
    ("M35-case", lambda t: _info([*_base(), sibling("Config.json", CONFIG)]), 7, "case"),
    ("M39-300-bytes", lambda t: _info([*_base(), sibling("a" * 300, b"x")]), 7, "255"),
    (
        "M39-5000-path",
        lambda t: _info([*_base(), sibling("/".join(["d" * 200] * 25), b"x")]),
        7,
        "4096",
    ),
    (
        "M40-prefix",
        lambda t: _info([*_base(), sibling("a", b"x"), sibling("a/b", b"y")]),
        7,
        "directory",
    ),
    ("M40-readme-dir", lambda t: _info([*_base(), sibling("README.md/x", b"y")]), 7, "directory"),
    ("M41-git", lambda t: _info([*_base(), sibling(".git/hooks/post-checkout", b"x")]), 7, ".git"),
    ("M41-sub-git", lambda t: _info([*_base(), sibling("sub/.git/config", b"x")]), 7, ".git"),
    ("M42-lf", lambda t: _info([*_base(), sibling("a\nb.txt", b"x")]), 7, "control"),
    ("M42-crlf", lambda t: _info([*_base(), sibling("a\r\nSet-Cookie: x", b"x")]), 7, "control"),
    ("M42-rtl", lambda t: _info([*_base(), sibling("evil\u202etxt.exe", b"x")]), 7, "direction"),
    ("M36-traversal", lambda t: _info([*_base(), sibling("a/../../b", b"x")]), 7, ".."),
]


def _nest(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _files_besides(root: Path, home: Path) -> set[Path]:
    return {p for p in root.rglob("*") if home not in p.parents and p != home}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_model_info_is_refused(
    case: Case, evil: HostileHub, hubd: Callable[..., Result], home: Path, tmp_path: Path
) -> None:
    _, body, code, words = case
    # A repo mirrored honestly first, so blobs/, snapshots/ and keys/ exist (the SEED step).
    evil.scenarios["evil/honest"] = honest({"README.md": README, "config.json": CONFIG}, OTHER)
    assert hubd("mirror", "evil/honest").code == 0
    before = _files_besides(tmp_path, home)
    snapshot_files = sorted((home / "store" / "snapshots").rglob("*"))
    evil.scenarios["evil/x"] = Scenario(body(tmp_path), {"README.md": README, "config.json": b"{}"})

    result = hubd("mirror", "evil/x")

    assert result.code == code, result.err
    assert result.err.startswith("hubd: error: "), result.err
    assert "Traceback" not in result.err
    assert words in result.err, result.err
    assert _files_besides(tmp_path, home) == before  # nothing written outside the home
    assert sorted((home / "store" / "snapshots").rglob("*")) == snapshot_files
    assert not (home / "store" / "snapshots" / "evil" / "x").exists()
    assert check_store(home) == []
    assert hubd("verify").code == 0


def test_lfs_entry_without_pointer_size_is_accepted(
    evil: HostileHub, hubd: Callable[..., Result], home: Path
) -> None:
    """M71: pointerSize is informational; its absence is no reason to refuse (or crash)."""
    weights = b"\x00" * 4096
    lfs = {"sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights)}
    evil.scenarios["evil/x"] = Scenario(
        _info([sibling("README.md", README), sibling("model.bin", weights, lfs=lfs)]),
        {"README.md": README, "model.bin": weights},
    )
    result = hubd("mirror", "evil/x")
    assert result.code == 0, result.err
    assert check_store(home) == []


def test_bytes_other_than_declared_are_refused_even_when_the_size_matches(
    evil: HostileHub, hubd: Callable[..., Result], home: Path
) -> None:
    """R4 (M53): the declared blob id is checked; a swapped body of the same size is refused."""
    evil.scenarios["evil/x"] = Scenario(
        _info(_base()), {"README.md": README, "config.json": b'{"model_type": "evil!"}\n'}
    )
    result = hubd("mirror", "evil/x")
    assert result.code == 6, result.err
    assert not (home / "store" / "snapshots" / "evil" / "x").exists()


@pytest.mark.parametrize("text", ["evil/honest\n", "evil\n/honest", "evil/honest@main\n"])
def test_repo_id_with_a_newline_is_refused(
    text: str, evil: HostileHub, hubd: Callable[..., Result]
) -> None:
    """M78: `$` matches before a final newline; the ids are matched whole."""
    result = hubd("mirror", text)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err


def test_model_info_larger_than_the_bound_is_refused(
    evil: HostileHub, hubd: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """M31/M32: a model info is read no further than its bound."""
    monkeypatch.setattr("hubd.sources.huggingface.INFO_LIMIT", 4096)
    evil.scenarios["evil/x"] = Scenario(
        _info([sibling(f"f{i}.json", b"{}") for i in range(200)]), {}
    )
    result = hubd("mirror", "evil/x")
    assert result.code == 5, result.err
    assert "more than 4096 bytes" in result.err


def test_readme_kept_as_card_is_bounded(
    evil: HostileHub, hubd: Callable[..., Result], home: Path
) -> None:
    """M75: a huge README is stored as a blob, but the catalog keeps only its start."""
    readme = b"---\nlicense: mit\n---\n" + b"x" * (3 * 1024 * 1024)
    evil.scenarios["evil/x"] = honest({"README.md": readme, "config.json": CONFIG})
    assert hubd("mirror", "evil/x").code == 0
    shown = json.loads(hubd("show", "evil/x", "--json").out)
    assert shown["license"] == "mit"
    assert (home / "catalog.db").stat().st_size < 2 * 1024 * 1024 + 512 * 1024


@pytest.mark.parametrize(
    "adapter_config",
    [b"[1, 2, 3]", b"[" * 100_000 + b"]" * 100_000, b'"just a string"', b"\xff\xfe"],
    ids=["list", "deep", "string", "not-utf8"],
)
def test_hostile_adapter_config_is_no_traceback(
    adapter_config: bytes, evil: HostileHub, hubd: Callable[..., Result], home: Path
) -> None:
    """A file hubd reads for lineage is as untrusted as the metadata: odd ones mean no base."""
    evil.scenarios["evil/x"] = honest(
        {"README.md": README, "adapter_config.json": adapter_config, "adapter.bin": b"w"}
    )
    result = hubd("mirror", "evil/x", "--json")
    assert result.code == 0, result.err
    assert result.json()["base_model"] is None
    assert check_store(home) == []


def test_card_front_matter_nested_too_deep_is_dropped(
    evil: HostileHub, hubd: Callable[..., Result], home: Path
) -> None:
    """YAML front matter nested deeper than the catalog keeps is no card metadata, no crash."""
    readme = b"---\nlicense: mit\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n---\n# deep\n"
    evil.scenarios["evil/x"] = honest({"README.md": readme, "config.json": CONFIG})
    result = hubd("mirror", "evil/x")
    assert result.code == 0, result.err
    assert check_store(home) == []
