"""HfSource and `hubd mirror` against the real Hub's answers, replayed (tests/replayhub.py).

And what a failed mirror says: a repo the endpoint does not have is named with close names the
endpoint's search knows ("did you mean"), with the same error and exit code as without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import LORA, MODEL, Result
from replayhub import ReplayHub, generated, load
from support.fakehub import FakeHub
from test_partial_hubs import OlahLike

from hubd.config import load_settings
from hubd.refs import RepoRef
from hubd.sources.registry import source_for

REPO = "wzshiming/gpt2"
LFS_FILE = "64-8bits.tflite"  # the LFS file whose 302 to the CDN is recorded


def test_a_missing_repo_is_named_with_close_names_from_the_search(
    hub: FakeHub, hubd: Callable[..., Result]
) -> None:
    result = hubd("mirror", "acme/tiny-llam", "--endpoint", hub.endpoint)

    assert result.code == 3, result.err
    assert "repository acme/tiny-llam not found" in result.err
    assert f"hint: did you mean {MODEL}, {LORA}?" in result.err
    searches = [r.path for r in hub.requests if r.path.startswith("/api/models?")]
    assert searches == ["/api/models?search=tiny-llam&limit=20"]


def test_a_failed_search_leaves_the_error_as_it_was(
    home: object, hubd: Callable[..., Result]
) -> None:
    with OlahLike() as olah:  # no search route: 404
        result = hubd("mirror", "acme/missing", "--endpoint", olah.endpoint)
    assert result.code == 3, result.err
    assert "repository acme/missing not found" in result.err
    assert "did you mean" not in result.err


@pytest.fixture(params=[True, False], ids=["blobs", "names-only"])
def replay(request: pytest.FixtureRequest, home: Path) -> Iterator[ReplayHub]:
    """The recorded Hub; names-only answers ``?blobs=true`` as recorded (without sizes)."""
    with ReplayHub(blobs=request.param) as server:
        yield server


def test_hfsource_resolves_the_recorded_repo(replay: ReplayHub, home: Path) -> None:
    source = source_for(load_settings(), replay.endpoint, False)

    remote = source.resolve(RepoRef.parse(REPO))

    recorded = load("models.tree.recursive")["response"]["json"]
    assert remote.commit == load("models.revision")["response"]["json"]["sha"]
    assert {f.path: f.size for f in remote.files} == {
        e["path"]: e["size"] for e in recorded if e["type"] == "file"
    }
    weights = next(f for f in remote.files if f.path == "model.safetensors")
    assert weights.sha256 == next(e for e in recorded if e["path"] == weights.path)["lfs"]["oid"]
    asked = [p for m, p in replay.requests if m == "GET"]
    assert asked[0] == f"/api/models/{REPO}/revision/main?blobs=true"
    tree = f"/api/models/{REPO}/tree/{remote.commit}?recursive=true"
    assert (tree in asked) is not replay.blobs  # the tree only when the model info lacks sizes


@pytest.mark.parametrize("part_size", [None, 1024 * 1024], ids=["default", "1MiB-parts"])
def test_mirror_of_the_recorded_repo_verifies_every_byte(
    replay: ReplayHub,
    hubd: Callable[..., Result],
    home: Path,
    part_size: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 1 MiB parts the 2 MiB non-LFS tokenizer is located through its relative 307 too."""
    if part_size:
        monkeypatch.setenv("HUBD_PART_SIZE", str(part_size))
    include = ("--include", "*.json", "--include", "*.txt", "--include", LFS_FILE)

    result = hubd("mirror", REPO, "--endpoint", replay.endpoint, *include, "--json")

    out = result.json()
    snapshot = Path(out["snapshot"])
    mirrored = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
    assert LFS_FILE in mirrored and "onnx/tokenizer.json" in mirrored and "README.md" in mirrored
    assert out["files"] == len(mirrored) and out["bytes_transferred"] > 125_000_000
    for name in mirrored:
        size = replay.files[name]["size"]
        assert (snapshot / name).stat().st_size == size
        assert (snapshot / name).read_bytes() == b"".join(generated(name, 0, size))
    assert hubd("verify", REPO).code == 0
    asked = [p for _, p in replay.requests]
    # small files through the relative 307 to resolve-cache, the LFS file from the "CDN" in parts
    assert any(p.startswith(f"/api/resolve-cache/models/{REPO}/") for p in asked)
    assert any(p.startswith("cdn:/xet-bridge-us/") for p in asked)
    if part_size:
        tokenizer = f"/{REPO}/resolve/{out['commit']}/onnx/tokenizer.json"
        assert ("HEAD", tokenizer) in replay.requests
    # the Xet headers of the 302 (X-Xet-Hash, Link rel="xet-auth") are ignored
    assert not [p for p in asked if "xet-read-token" in p or "reconstructions" in p]


def test_a_missing_repo_is_exit_3_with_a_clear_message(
    replay: ReplayHub, hubd: Callable[..., Result]
) -> None:
    """The Hub says 401 without an error code for a repo that does not exist."""
    result = hubd("mirror", f"{REPO.split('/')[0]}/does-not-exist", "--endpoint", replay.endpoint)

    assert result.code == 3, result.err
    assert "repository wzshiming/does-not-exist not found on 127.0.0.1:" in result.err
    assert "if it is private, pass a token" in result.err
    assert "Traceback" not in result.err


def test_a_missing_revision_is_exit_3(replay: ReplayHub, hubd: Callable[..., Result]) -> None:
    result = hubd("mirror", f"{REPO}@does-not-exist", "--endpoint", replay.endpoint)

    assert result.code == 3, result.err
    assert "revision 'does-not-exist' not found in wzshiming/gpt2" in result.err
