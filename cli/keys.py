"""`hubd keys` and `hubd trust`: the node's signing key and the signers this node trusts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hubd.trust.certificates import subject
from hubd.trust.keys import Signer, add_trusted, node_key, trusted_signers
from hubd.trust.oms import key_hint, public_pem
from hubd.trust.policy import load_rules

from .common import json_option, open_context
from .output import emit_json, table


@click.group("keys")
def keys_group() -> None:
    """This node's ECDSA P-256 signing key (created on first use)."""


@keys_group.command("show")
@click.option("--public", "public", is_flag=True, help="Print the public key PEM only.")
@json_option
@click.pass_obj
def show_cmd(obj: dict[str, Any], public: bool, as_json: bool) -> None:
    """Show the node key's hint and where it lives (never the private key)."""
    context = open_context(obj)
    key = node_key(context).public_key()
    pem = public_pem(key).decode()
    if public:
        click.echo(pem, nl=False)
        return
    keys = context.settings.home / "keys"
    info = {
        "hint": key_hint(key),
        "curve": key.curve.name,
        "private_key": str(keys / "node.key"),
        "public_key": str(keys / "node.pub"),
    }
    if as_json:
        emit_json({**info, "pem": pem})
        return
    for name, value in info.items():
        click.echo(f"{name}: {value}")


@click.group("trust")
def trust_group() -> None:
    """Trusted signers (public keys, organisation CAs) and the trust policy (policy.toml)."""


@trust_group.command("add")
@click.argument("name")
@click.argument("pem", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.pass_obj
def add_cmd(obj: dict[str, Any], name: str, pem: Path) -> None:
    """Trust PEM as signer NAME: an ECDSA P-256/P-384 public key or an organisation CA
    certificate (then every bundle whose certificate chain leads to it signs as NAME)."""
    signer = add_trusted(open_context(obj), name, pem)
    what = f"CA {subject(signer.ca)}, " if signer.ca is not None else ""
    click.echo(f"trusted {signer.name} ({what}key {signer.hint[:16]}…)")


def _describe(signer: Signer) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": signer.name,
        "kind": signer.kind,
        "algorithm": signer.algorithm,
        "hint": signer.hint,
        "path": str(signer.path),
    }
    if signer.ca is not None:
        info["subject"] = subject(signer.ca)
        info["not_after"] = signer.ca.not_valid_after_utc.isoformat()
    return info


@trust_group.command("ls")
@json_option
@click.pass_obj
def ls_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """List trusted signers (keys and CAs) and the trust policy's rules."""
    context = open_context(obj)
    signers = [_describe(s) for s in trusted_signers(context)]
    rules = [{"repo": list(r.repos), "signers": list(r.signers)} for r in load_rules(context)]
    if as_json:
        emit_json({"signers": signers, "rules": rules})
        return
    table(
        ["SIGNER", "KIND", "ALGORITHM", "KEY HINT", "CA SUBJECT (VALID UNTIL)"],
        [
            [
                s["name"],
                s["kind"],
                s["algorithm"],
                s["hint"][:16],
                f"{s['subject']} ({s['not_after'][:10]})" if "subject" in s else "",
            ]
            for s in signers
        ],
    )
    for rule in rules:
        click.echo(f"rule: {', '.join(rule['repo'])} needs {', '.join(rule['signers'])}")
    if not rules:
        click.echo("no trust rules: no repo needs a signature (trust/policy.toml)")
