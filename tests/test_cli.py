"""The CLI as a user runs it (in-process): output, --json against the schemas, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import GATED, LORA, MODEL, Result
from support.fakehub import FakeHub
from test_schemas import validate

Hubd = Callable[..., Result]


@pytest.fixture
def endpoint(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    return hub.endpoint


def test_mirror_ls_show_verify(hubd: Hubd, endpoint: str, home: Path) -> None:
    first = hubd("mirror", LORA, "--with-base")
    assert first.code == 0, first.err
    assert f"mirrored {LORA}@main" in first.out and f"adapter for {MODEL}" in first.out
    again = hubd("mirror", MODEL)
    assert again.code == 0 and "is up to date" in again.out and "no bytes moved" in again.out

    summary = json.loads(hubd("mirror", MODEL, "--json").out)
    validate("mirror-result.schema.json", summary)
    assert summary["up_to_date"] is True and summary["bytes_transferred"] == 0

    listing = hubd("ls", "--json")
    validate("catalog-repo.schema.json", json.loads(listing.out))
    rows = listing.json()["repos"]
    assert {r["repo"]: r["kind"] for r in rows} == {MODEL: "model", LORA: "adapter"}
    assert MODEL in hubd("ls").out

    detail = json.loads(hubd("show", LORA, "--json").out)
    validate("catalog-repo.schema.json", detail)
    assert detail["revisions"][0]["base_model"] == MODEL
    assert detail["revisions"][0]["provenance"][0]["node"] == "test-node"
    shown = hubd("show", MODEL).out
    assert "provenance #0" in shown and "model-00001-of-00002.safetensors" in shown

    report = hubd("verify", "--json")
    assert report.code == 0
    validate("verify-report.schema.json", json.loads(report.out))
    assert "all ok" in hubd("verify").out


def test_verify_names_damaged_file_and_exits_1(hubd: Hubd, endpoint: str, home: Path) -> None:
    assert hubd("mirror", MODEL, "-q").code == 0
    detail = json.loads(hubd("show", MODEL, "--json").out)
    target = next(f for f in detail["revisions"][0]["files"] if f["path"].endswith("safetensors"))
    blob = home / "store" / "blobs" / "sha256" / target["sha256"][:2] / target["sha256"]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = hubd("verify")
    assert result.code == 1
    assert f"DAMAGED {MODEL}@{detail['revisions'][0]['commit'][:12]} {target['path']}" in result.out
    assert "hubd: error: 1 damaged file(s)" in result.err
    as_json = hubd("verify", MODEL, "--json")
    assert as_json.code == 1 and json.loads(as_json.out)["damaged"][0]["path"] == target["path"]


def test_rm_and_gc(hubd: Hubd, endpoint: str, home: Path) -> None:
    assert hubd("mirror", MODEL, "-q").code == 0
    assert hubd("mirror", LORA, "-q").code == 0
    removed = hubd("rm", MODEL)
    assert removed.code == 0 and "hubd gc" in removed.out
    assert not (home / "store" / "snapshots" / MODEL).exists()
    gc = json.loads(hubd("gc", "--json").out)
    assert gc["removed"] > 0 and gc["freed_bytes"] > 0
    assert [r["repo"] for r in hubd("ls", "--json").json()["repos"]] == [LORA]
    assert hubd("verify").code == 0
    missing = hubd("rm", f"{LORA}@nonexistent")
    assert missing.code == 3 and "hubd: error:" in missing.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["mirror", "not-a-repo"], 2, "not a repo id"),
        (["mirror", "a/b@../etc"], 2, "not a revision"),
        (["mirror", "nobody/nothing"], 3, "not found"),
        (["mirror", f"{MODEL}@nope"], 3, "revision 'nope' not found"),
        (["mirror", GATED], 4, "gated"),
        (["mirror", MODEL, "--include", "*.gguf"], 3, "no file matches"),
        # The flags are a MirrorRequest, checked as the HTTP API checks a job's body.
        (["mirror", MODEL, "--include", ""], 2, "include[0]: String should have at least 1"),
        (["jobs", "add", MODEL, "--from", ""], 2, "from: String should have at least 1"),
        (["show", "nobody/nothing"], 3, "not in the catalog"),
        (["mirror"], 2, "Missing argument"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    hubd: Hubd, endpoint: str, args: list[str], code: int, message: str
) -> None:
    result = hubd(*args)
    assert result.code == code, result.err
    assert "hubd: error:" in result.err and message in result.err
    assert "Traceback" not in result.err


def test_gated_hint_and_token(hubd: Hubd, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    denied = hubd("mirror", GATED)
    assert "hubd: hint:" in denied.err and "HF_TOKEN" in denied.err
    monkeypatch.setenv("HF_TOKEN", "hf_valid_token")
    assert hubd("mirror", GATED, "-q").code == 0


def test_unreachable_endpoint(hubd: Hubd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = hubd("mirror", MODEL)
    assert result.code == 5 and "cannot reach http://127.0.0.1:9" in result.err


def test_offline_mode(hubd: Hubd, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = hubd("mirror", MODEL)
    assert result.code == 5 and "offline" in result.err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hubd("mirror", MODEL, "-q").code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "up to date" in hubd("mirror", MODEL).out


def test_bad_config_file(hubd: Hubd, home: Path) -> None:
    home.mkdir(parents=True)
    (home / "hubd.toml").write_text("[mirror]\nconcurrency = 'lots'\n")
    result = hubd("ls")
    assert result.code == 2 and "invalid value 'lots'" in result.err


def test_config_command(hubd: Hubd, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    rows = json.loads(hubd("config", "--json").out)
    values = {r["key"]: r["value"] for r in rows}
    assert values["home"] == str(home) and values["token"] == "(set)"
    assert "hf_secret_value" not in hubd("config").out
