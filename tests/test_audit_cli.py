"""`hubd audit` and the `hubd mirror` policy gate as a user runs them, against the loopback hub."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LORA, MODEL, Result
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support.corpus import cases
from support.fakehub import FakeHub
from test_mirror import file_gets
from test_schemas import validate

from hubd.audit.bom import spdx_problems

Hubd = Callable[..., Result]
CORPUS = {c.repo: c for c in cases()}


@pytest.fixture
def endpoint(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    for repo in ("acme/nc", "meta/llama3-base", "acme/lora-on-llama", "acme/evil-pickle"):
        hub.add_repo(repo, CORPUS[repo].files)
    return hub.endpoint


def blobs(home: Path) -> list[Path]:
    root = home / "store" / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_denied_mirror_moves_no_bytes(
    hubd: Hubd, endpoint: str, hub: FakeHub, home: Path, policy: Callable[[str], Path]
) -> None:
    policy('[[rules]]\nrepo = "acme/tiny-*"\naction = "allow"\n\n'
           '[[rules]]\nclass = "non-commercial"\naction = "deny"\n')  # fmt: skip
    denied = hubd("mirror", "acme/nc")
    assert denied.code == 9, denied.err
    assert (
        'hubd: error: acme/nc: denied by policy rule #2 (class = "non-commercial"): '
        "license cc-by-nc-4.0\n" in denied.err
    )
    assert "nothing was downloaded" in denied.err
    assert file_gets(hub) == [] and blobs(home) == []
    assert hubd("ls", "--json").json() == {"repos": [], "next": None}
    assert hubd("mirror", MODEL, "-q").code == 0  # allowed by rule #1


def test_gate_follows_lineage_through_the_source(
    hubd: Hubd, endpoint: str, hub: FakeHub, home: Path, policy: Callable[[str], Path]
) -> None:
    """The LoRA says apache-2.0; its base (not mirrored) is Llama 3: denied before download."""
    policy('[[rules]]\nlicense = "llama3"\naction = "deny"\nreason = "no Llama terms"\n')
    denied = hubd("mirror", "acme/lora-on-llama", "--with-base")
    assert denied.code == 9
    assert (
        'acme/lora-on-llama: denied by policy rule #1 (license = "llama3"): license llama3 '
        "inherited from meta/llama3-base (adapter) (no Llama terms)" in denied.err
    )
    assert file_gets(hub) == [] and blobs(home) == []


def test_review_lets_the_mirror_proceed_and_says_so(
    hubd: Hubd, endpoint: str, policy: Callable[[str], Path]
) -> None:
    policy('[[rules]]\nclass = "osi-open-source"\naction = "review"\n')
    result = hubd("mirror", MODEL, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    validate("mirror-result.schema.json", summary)
    assert summary["files"] > 0 and summary["review"] == (
        f'{MODEL}: flagged for review by policy rule #1 (class = "osi-open-source"): '
        "license apache-2.0"
    )
    assert "needs review: " in hubd("mirror", MODEL).out
    policy('[[rules]]\nclass = "unknown"\naction = "deny"\n')
    assert json.loads(hubd("mirror", MODEL, "--json").out)["review"] is None


def test_audit_exit_codes_and_formats(
    hubd: Hubd, endpoint: str, tmp_path: Path, policy: Callable[[str], Path]
) -> None:
    assert hubd("mirror", LORA, "--with-base", "-q").code == 0
    clean = hubd("audit")
    assert clean.code == 0, clean.err
    assert re.search(
        rf"^{LORA}\s+[0-9a-f]{{12}}\s+adapter\s+osi-open-source\s+Apache-2.0", clean.out, re.M
    )
    assert clean.out.rstrip().endswith("2 revision(s) audited: compliant")

    path = policy(f'[[rules]]\nrepo = "{LORA}"\naction = "deny"\n')
    denied = hubd("audit", "--format", "json")
    assert denied.code == 1
    assert "hubd: error: 1 revision(s) violate the policy" in denied.err
    report = json.loads(denied.out)
    validate("audit-report.schema.json", report)
    assert report["policy"] == str(path) and report["compliant"] is False
    assert {r["repo"]: r["decision"]["action"] for r in report["revisions"]} == {
        MODEL: "allow",
        LORA: "deny",
    }
    assert hubd("audit", MODEL, "--json").code == 0  # one repo: compliant
    assert hubd("audit", MODEL, "--policy", str(tmp_path / "none.toml")).code == 2

    for fmt in ("json", "markdown", "html", "cyclonedx", "spdx", "table"):
        out = tmp_path / f"report.{fmt}"
        written = hubd("audit", "--format", fmt, "-o", str(out))
        assert written.code == 1 and written.out == "" and f"wrote {out}" in written.err
        assert not list(tmp_path.glob(".report.*"))  # no temp file left behind
        text = out.read_text()
        if fmt == "cyclonedx":
            assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
        elif fmt == "spdx":
            assert spdx_problems(json.loads(text)) == []
        elif fmt == "json":
            validate("audit-report.schema.json", json.loads(text))
        else:
            assert LORA in text and "1 violation(s)" in text


def test_audit_flags_a_mirrored_pickle_that_runs_a_shell(hubd: Hubd, endpoint: str) -> None:
    assert hubd("mirror", "acme/evil-pickle", "-q").code == 0
    result = hubd("audit", "acme/evil-pickle")
    assert result.code == 1
    assert re.search(r"critical: pytorch_model\.bin: imports (os|posix)\.system", result.out)
    assert "weights only in pickle-based files" in result.out


def test_audit_errors(hubd: Hubd, home: Path, tmp_path: Path) -> None:
    assert hubd("audit").code == 0  # an empty catalog is compliant
    missing = hubd("audit", "nobody/nothing")
    assert missing.code == 3 and "not in the catalog" in missing.err
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\naction = "block"\n')
    result = hubd("audit", "--policy", str(bad))
    assert result.code == 2 and "rules[0].action: Input should be 'allow', 'deny' or" in result.err
