"""`hubd add`: local directories become revisions that serve like mirrored ones."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result
from huggingface_hub import snapshot_download
from support.modelgen import tiny_lora_files, tiny_model_files, write_files
from test_server import node, serving

from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

Hubd = Callable[..., Result]
REPO = "acme/support-lora"


@pytest.fixture
def finetune(tmp_path: Path) -> Path:
    root = tmp_path / "my-finetune"
    write_files(root, tiny_lora_files(base_model="acme/tiny-llama"))
    write_files(root / "extra", {"notes.txt": b"trained on support tickets\n"})
    return root


def test_add_is_idempotent_and_versioned(hubd: Hubd, finetune: Path) -> None:
    first = hubd("add", str(finetune), "--repo", REPO, "--json").json()
    assert first["files"] == 4 and first["is_adapter"] and first["base_model"] == "acme/tiny-llama"
    assert not first["up_to_date"] and first["bytes_reused"] == 0
    again = hubd("add", str(finetune), "--repo", REPO, "--json").json()
    assert again["commit"] == first["commit"] and again["up_to_date"] and again["bytes_added"] == 0
    (finetune / "extra" / "notes.txt").write_bytes(b"retrained\n")
    changed = hubd("add", str(finetune), "--repo", REPO, "--revision", "v2", "--json").json()
    assert changed["commit"] != first["commit"]
    detail = json.loads(hubd("show", REPO, "--json").out)
    refs = {rev["commit"]: rev["refs"] for rev in detail["revisions"]}
    assert refs[changed["commit"]] == ["v2"] and refs[first["commit"]] == ["main"]
    hop = detail["revisions"][0]["provenance"][0]
    assert hop["source"] == f"file://{finetune.resolve()}"
    assert hubd("verify").code == 0


def test_added_repo_serves_to_hf_clients_and_peers(
    hubd: Hubd, finetune: Path, ctx: Context, tmp_path: Path
) -> None:
    write_files(finetune, {"big.safetensors": os.urandom(11 * 1024 * 1024)})
    hubd("add", str(finetune), "--repo", REPO, "--json").json()
    with serving(ctx) as url:
        path = Path(snapshot_download(REPO, endpoint=url, cache_dir=tmp_path / "hf"))
        assert (path / "extra" / "notes.txt").read_bytes() == b"trained on support tickets\n"
        peer = node(ctx.settings, tmp_path, "peer", url)
        result = asyncio.run(mirror(peer, RepoRef.parse(REPO)))
    assert result.files == 5 and result.is_adapter
    assert (Path(result.snapshot) / "big.safetensors").read_bytes() == (
        finetune / "big.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        ("missing", ["--repo", REPO], 2, "is not a directory"),
        ("empty", ["--repo", REPO], 2, "has no files"),
        ("escape", ["--repo", REPO], 7, "points outside"),
        ("ok", ["--repo", "not a repo"], 2, "not a repo id"),
        ("ok", ["--repo", REPO, "--revision", "../x"], 2, "not a revision"),
    ],
)
def test_bad_input(
    hubd: Hubd,
    tmp_path: Path,
    finetune: Path,
    setup: str,
    args: list[str],
    code: int,
    message: str,
) -> None:
    root = {"missing": tmp_path / "nope", "empty": tmp_path / "empty"}.get(setup, finetune)
    if setup == "empty":
        root.mkdir()
    if setup == "escape":
        (finetune / "secret").symlink_to("/etc/passwd")
    result = hubd("add", str(root), *args)
    assert result.code == code and message in result.err, result.err
    assert hubd("ls", "--json").json() == {"repos": [], "next": None}


def test_model_directory(hubd: Hubd, tmp_path: Path, ctx: Context) -> None:
    root = tmp_path / "model"
    write_files(root, tiny_model_files(seed=9))
    data = hubd("add", str(root), "--repo", "acme/in-house", "--json").json()
    assert not data["is_adapter"] and data["files"] == len(tiny_model_files(seed=9))
    assert ctx.store.get_ref("acme/in-house", "main") == data["commit"]
