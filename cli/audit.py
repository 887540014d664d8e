"""`hubd audit`: licenses, open source or open weights, scans and policy, as a report or AI-BOM."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from hubd.audit import AuditReport, audit, collector_paused
from hubd.audit.bom import cyclonedx, spdx
from hubd.audit.report import HEADERS, html, markdown, notes, table_rows, to_json_text, verdict_line
from hubd.errors import NotCompliant, StoreError
from hubd.refs import RepoRef

from .common import json_option, open_context
from .output import format_table

FORMATS = ("table", "json", "markdown", "html", "cyclonedx", "spdx")


def render(report: AuditReport, fmt: str) -> str:
    if fmt == "json":
        return to_json_text(report)
    if fmt == "markdown":
        return markdown(report)
    if fmt == "html":
        return html(report)
    if fmt == "cyclonedx":
        return json.dumps(cyclonedx(report), indent=2) + "\n"
    if fmt == "spdx":
        return json.dumps(spdx(report), indent=2) + "\n"
    headers = [h.upper() for h in HEADERS]
    lines = [format_table(headers, table_rows(report)), *notes(report), verdict_line(report)]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """The report appears whole or not at all, even if hubd is interrupted while writing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


@click.command("audit")
@click.argument("repo", required=False)
@click.option(
    "--policy",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Policy file (TOML) to check against (default: the audit.policy setting).",
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Report for people (table, markdown, html), JSON, or an AI-BOM (cyclonedx, spdx).",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE."
)
@json_option
@click.pass_obj
def audit_cmd(
    obj: dict[str, Any],
    repo: str | None,
    policy: Path | None,
    fmt: str,
    output: Path | None,
    as_json: bool,
) -> None:
    """Audit REPO (org/name[@revision]) or the whole catalog; exit 1 on policy violations."""
    ref = RepoRef.parse(repo) if repo else None
    context = open_context(obj, policy=policy)
    report = audit(context, ref.repo_id if ref else None, ref.revision if ref else None)
    with collector_paused():
        text = render(report, "json" if as_json else fmt)
    if output is not None:
        write_atomic(output, text)
        click.echo(f"wrote {output}: {verdict_line(report)}", err=True)
    else:
        click.echo(text, nl=False)
    if not report.compliant:
        raise NotCompliant(
            f"{len(report.violations)} revision(s) violate the policy or carry critical findings",
            hint="the report names each rule and finding",
        )
