"""The policy's `signed` condition: a stored signature that verifies with a trusted key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LORA, MODEL, Result
from sqlalchemy import select
from support.fakehub import FakeHub
from test_schemas import validate
from test_signing import write_key

from hubd.audit import facts as facts_module
from hubd.audit.facts import SignatureCheck, load_catalog
from hubd.catalog.models import SignatureVerdict
from hubd.config import load_settings
from hubd.context import Context

Hubd = Callable[..., Result]
DENY_UNSIGNED = '[[rules]]\nsigned = false\naction = "deny"\nreason = "sign it"\n'


@pytest.fixture
def mirrored(hubd: Hubd, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """MODEL and LORA mirrored: the mirror signs each with the node key."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    assert hubd("mirror", LORA, "-q").code == 0


def signatures_of(home: Path, repo: str) -> list[Path]:
    return sorted((home / "store" / "signatures" / repo).rglob("*.sig"))


def decisions(hubd: Hubd) -> tuple[int, dict[str, dict[str, Any]]]:
    result = hubd("audit", "--format", "json")
    report = json.loads(result.out)
    validate("audit-report.schema.json", report)
    return result.code, {r["repo"]: r["decision"] for r in report["revisions"]}


def signed_now(repo: str) -> bool:
    ctx = Context.open(load_settings())
    try:
        with ctx.catalog() as session:
            (row,) = load_catalog(session, repo)
        return SignatureCheck(ctx)(row)
    finally:
        ctx.close()


def test_signed_by_node_removed_and_untrusted(
    hubd: Hubd, mirrored: None, home: Path, tmp_path: Path
) -> None:
    assert signed_now(MODEL) and signed_now(LORA)  # the mirror signed both with the node key
    for sig in signatures_of(home, LORA):
        sig.unlink()
    assert signed_now(MODEL) and not signed_now(LORA)

    other = write_key(tmp_path / "other.key")
    assert hubd("sign", LORA, "--key", str(other)).code == 0
    assert not signed_now(LORA)  # a signature, but by a key nobody trusts
    assert hubd("trust", "add", "team", str(other.with_suffix(".pub"))).code == 0
    assert signed_now(LORA)

    (sig,) = signatures_of(home, LORA)
    sig.write_text("{not a bundle")
    assert not signed_now(LORA)  # broken: does not count, and raises nothing


def test_signature_over_other_digests_does_not_count(
    hubd: Hubd, mirrored: None, home: Path
) -> None:
    """A bundle that verifies but covers other content (here: LORA's, copied) is not MODEL's."""
    (model_sig,) = signatures_of(home, MODEL)
    (lora_sig,) = signatures_of(home, LORA)
    model_sig.write_bytes(lora_sig.read_bytes())
    assert not signed_now(MODEL)


def test_audit_denies_unsigned_revisions(
    hubd: Hubd, mirrored: None, home: Path, policy: Callable[[str], Path]
) -> None:
    policy(DENY_UNSIGNED)
    code, decided = decisions(hubd)
    assert code == 0 and {d["action"] for d in decided.values()} == {"allow"}

    for sig in signatures_of(home, LORA):
        sig.unlink()
    code, decided = decisions(hubd)
    assert code == 1
    assert decided[MODEL]["action"] == "allow"
    assert decided[LORA]["action"] == "deny" and decided[LORA]["condition"] == "signed = false"
    assert decided[LORA]["message"].startswith(f"{LORA}: denied by policy rule #1 (signed = false)")
    table = hubd("audit")
    assert table.code == 1 and "(sign it)" in table.out

    assert hubd("sign", LORA).code == 0  # signed again with the node key
    code, decided = decisions(hubd)
    assert code == 0 and decided[LORA]["action"] == "allow"


def test_mirror_gate_judges_the_revision_as_signed(
    hubd: Hubd,
    hub: FakeHub,
    home: Path,
    policy: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is signed before the download; the mirror signs it, so `signed = false` does not
    block a mirror, and `signed = true` lets one through a deny-by-default policy."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    policy(DENY_UNSIGNED)
    assert hubd("mirror", MODEL, "-q").code == 0
    policy('default = "deny"\n[[rules]]\norg = "acme"\nsigned = true\naction = "allow"\n')
    assert hubd("mirror", LORA, "-q").code == 0
    code, decided = decisions(hubd)
    assert code == 0 and decided[LORA]["condition"] == 'org = "acme", signed = true'


def test_signatures_are_read_only_when_they_decide(
    hubd: Hubd,
    mirrored: None,
    home: Path,
    policy: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checking a signature is the costly fact: asked only when the answer changes a decision."""
    for sig in signatures_of(home, LORA):
        sig.unlink()
    read: list[str] = []
    listing = facts_module.stored_signatures

    def counted(ctx: Context, repo: str, commit: str) -> list[Path]:
        read.append(repo)
        return listing(ctx, repo, commit)

    monkeypatch.setattr(facts_module, "stored_signatures", counted)
    policy('[[rules]]\nclass = "non-commercial"\naction = "deny"\n')
    assert decisions(hubd)[0] == 0 and read == []
    policy('[[rules]]\nrepo = "acme/*-lora"\nsigned = false\naction = "deny"\n')
    code, decided = decisions(hubd)
    assert code == 1 and decided[LORA]["action"] == "deny" and read == [LORA]
    policy('[[rules]]\nclass = "non-commercial"\nsigned = false\naction = "deny"\n')
    assert decisions(hubd)[0] == 0 and read == [LORA]  # no class matched: nothing to check


def test_verdicts_spare_checks_and_count_only_while_their_key_is_trusted(
    hubd: Hubd,
    mirrored: None,
    home: Path,
    tmp_path: Path,
    policy: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An audit records the signatures it verified; the next one takes them from the catalog
    by the bundle's digest, and only for keys trusted now: a key taken out of the trust store,
    or a bundle whose bytes changed, is checked again."""
    policy(DENY_UNSIGNED)
    for sig in signatures_of(home, LORA):
        sig.unlink()
    other = write_key(tmp_path / "other.key")
    assert hubd("sign", LORA, "--key", str(other)).code == 0
    assert hubd("trust", "add", "team", str(other.with_suffix(".pub"))).code == 0
    code, decided = decisions(hubd)
    assert code == 0 and {d["action"] for d in decided.values()} == {"allow"}
    ctx = Context.open(load_settings())
    with ctx.catalog() as session:
        held = session.scalars(select(SignatureVerdict.node)).all()
    ctx.close()
    assert held == [ctx.settings.node_name] * 2  # MODEL's by the node key, LORA's by team's

    checked: list[str] = []
    check = facts_module.check_bundle

    def counted(data: bytes, *args: Any) -> Any:
        checked.append(args[2])
        return check(data, *args)

    monkeypatch.setattr(facts_module, "check_bundle", counted)
    code, decided = decisions(hubd)
    assert code == 0 and checked == []  # both from the verdicts

    (home / "trust" / "team.pem").unlink()  # LORA's verdict was team's key's
    code, decided = decisions(hubd)
    assert code == 1 and decided[LORA]["action"] == "deny" and decided[MODEL]["action"] == "allow"
    assert [label.split("@")[0] for label in checked] == [LORA]

    (model_sig,) = signatures_of(home, MODEL)  # bytes that verify, but over LORA's files
    model_sig.write_bytes(next(iter(signatures_of(home, LORA))).read_bytes())
    checked.clear()
    code, decided = decisions(hubd)
    assert decided[MODEL]["action"] == "deny" and checked  # a new digest: checked, and refused
