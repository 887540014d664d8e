"""`hubd sign`: OMS v1.0 signatures over catalog revisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hubd.ops.sign import import_signature, sign_revision
from hubd.refs import RepoRef
from hubd.trust.certificates import load as load_certificates
from hubd.trust.keys import load_private_key

from .common import json_option, open_context
from .output import emit_json


@click.command("sign")
@click.argument("repo")
@click.option(
    "--key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="ECDSA P-256/P-384 private key PEM (default: the node key); --cert's key.",
)
@click.option(
    "--cert",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Signing certificate PEM of --key (certificate signing; may carry its chain too).",
)
@click.option(
    "--chain",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="PEM with the certificates between --cert and the organisation CA (repeatable).",
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Keep this OMS bundle (e.g. from `model_signing sign key`) after checking it.",
)
@json_option
@click.pass_obj
def sign_cmd(
    obj: dict[str, Any],
    repo: str,
    key: Path | None,
    cert: Path | None,
    chain: tuple[Path, ...],
    bundle: Path | None,
    as_json: bool,
) -> None:
    """Sign REPO[@rev]'s manifest (OpenSSF Model Signing v1.0), or attach a --bundle."""
    if bundle and (key or cert):
        raise click.UsageError("--bundle excludes --key and --cert")
    if cert and not key:
        raise click.UsageError("--cert needs the certificate's private key (--key)")
    if chain and not cert:
        raise click.UsageError("--chain needs --cert")
    ref = RepoRef.parse(repo)
    context = open_context(obj)
    if bundle:
        result = import_signature(context, ref, bundle)
    else:
        certificates = [c for path in (cert, *chain) if path for c in load_certificates(path)]
        result = sign_revision(context, ref, load_private_key(key) if key else None, certificates)
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(f"signed {result.repo}@{result.commit[:12]} by {result.signer}: {result.path}")
