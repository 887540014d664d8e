"""Audit reports for people: table rows for the terminal, Markdown, and one self-contained HTML
page (inline style, no scripts, no external assets) a compliance officer can archive or mail.
"""

from __future__ import annotations

import json
from html import escape
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from ..catalog.views import Time
from ..validation import Commit, Sha256, Size
from . import results
from .licenses import LicenseClass
from .results import RevisionAudit
from .scan import SEVERITIES

HEADERS = ["Repo", "Revision", "Kind", "Class", "SPDX", "Verdict", "MOF", "Findings", "Decision"]

Spdx = Annotated[
    str,
    Field(
        pattern=r"^(NOASSERTION|LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.+-]*)$",
        description="an SPDX license list id, a LicenseRef-… for licenses not on the list, or "
        "NOASSERTION",
    ),
]


# The parts are TypedDicts: a 10,000-revision report is some 300,000 of them, and pydantic
# checks a dict about ten times faster than it builds a model instance.
_part = with_config(ConfigDict(extra="forbid"))


@_part
class Source(TypedDict):
    """One place the revision declares a license: a card field, a LICENSE file, GGUF metadata."""

    source: Annotated[
        str,
        Field(pattern=r"^(card\.license|card\.license_name|card\.license_link|file:.+|gguf:.+)$"),
    ]
    value: str
    license: Annotated[
        str | None, Field(description="null: the source names no license hubd recognises")
    ]
    spdx: Spdx | None
    class_: Annotated[LicenseClass | None, Field(alias="class")]


@_part
class DeclaredTerms(TypedDict):
    """What the revision's own sources declare, before lineage."""

    class_: Annotated[LicenseClass, Field(alias="class")]
    spdx: Spdx
    license: str
    reason: str
    conflict: Annotated[
        str | None, Field(description="set when recognised sources name different licenses")
    ]
    sources: list[Source]


@_part
class Ancestor(TypedDict):
    repo: str
    relation: Literal["adapter", "finetune", "merge", "quantized"]
    via: Annotated[str, Field(description="the repo derived from `repo`")]
    in_catalog: bool
    commit: Commit | None
    license: str
    spdx: Spdx
    class_: Annotated[LicenseClass, Field(alias="class")]


@_part
class Evidence(TypedDict):
    component: str
    found: bool
    detail: str


@_part
class Mof(TypedDict):
    class_: Annotated[
        Literal["III", "II", "I", "none"],
        Field(alias="class", description="estimated Model Openness Framework class"),
    ]
    evidence: list[Evidence]
    missing: Annotated[list[str], Field(description="what the next class up needs")]


@_part
class Finding(TypedDict):
    path: Annotated[str, Field(description="the file, or * for the whole revision")]
    severity: Literal["critical", "high", "medium", "low"]
    check: Literal[
        "pickle-import",
        "pickle-parse",
        "pickle-only",
        "safetensors-header",
        "gguf-header",
        "blob-missing",
    ]
    detail: str


@_part
class Decision(TypedDict):
    action: Literal["allow", "deny", "review"]
    rule: Annotated[
        Annotated[int, Field(ge=1)] | None,
        Field(description="1-based index of the matching rule; null for the default or no policy"),
    ]
    condition: str | None
    message: str


@_part
class AuditedFile(TypedDict):
    path: str
    size: Size
    sha256: Sha256


@_part
class RevisionEntry(TypedDict):
    """One revision's audit."""

    repo: Annotated[str, Field(pattern=r"^[^/]+/[^/]+$")]
    revision: Commit
    refs: list[str]
    kind: Literal["model", "adapter"]
    mirrored_at: Time
    source: Annotated[str, Field(json_schema_extra={"format": "uri"})]
    class_: Annotated[
        LicenseClass,
        Field(alias="class", description="the most restrictive class in the revision's lineage"),
    ]
    spdx: Annotated[Spdx, Field(description="the license that sets the class")]
    license: Annotated[str, Field(description="the same license as a Hub card identifier")]
    licenses: Annotated[
        list[Spdx],
        Field(
            min_length=1,
            description="every license that applies, the revision's own first, then its lineage's",
        ),
    ]
    class_reason: str
    declared: DeclaredTerms
    lineage: list[Ancestor]
    verdict: Annotated[
        Literal["open-source", "open-weight", "unknown"],
        Field(
            description="OSI Open Source AI Definition 1.0: open-source needs OSI-approved "
            "parameters, training and inference code, and data information"
        ),
    ]
    verdict_reasons: list[str]
    mof: Mof
    findings: list[Finding]
    decision: Decision
    compliant: bool
    files: list[AuditedFile]


@_part
class Summary(TypedDict):
    revisions: Size
    violations: Size
    review: Size
    critical_findings: Size
    conflicts: Size
    by_class: dict[LicenseClass, int]
    by_verdict: dict[str, int]


class AuditReport(BaseModel):
    """A compliance audit of the catalog (or one repo or revision): one entry per revision with
    its license class, SPDX id, open-source verdict, MOF class, scan findings and the policy
    decision. `compliant` is false when any revision is denied by the policy or carries a
    critical finding; `hubd audit` then exits 1."""

    model_config = ConfigDict(extra="forbid", title="hubd audit --format json")

    generated_at: Time
    hubd_version: str
    policy: str | None = Field(description="the policy file checked, if any")
    compliant: bool
    summary: Summary
    revisions: list[RevisionEntry]


_ROW = TypeAdapter(RevisionEntry)


def to_json_text(report: results.AuditReport) -> str:
    """Checked against :class:`AuditReport`, then indented, except that each revision is one
    line: greppable, and written by pydantic's compiled encoder (``indent`` would turn json's C
    encoder off), which keeps writing 10,000 revisions a small part of the audit (bench/audit.py).
    """
    checked = AuditReport.model_validate(report.to_json())
    data = checked.model_dump(mode="json", by_alias=True, exclude={"revisions"})
    head = json.dumps(data, indent=2)[: -len("\n}")]
    revisions = [
        _ROW.dump_json(r, by_alias=True, ensure_ascii=True).decode() for r in checked.revisions
    ]
    body = "[\n    " + ",\n    ".join(revisions) + "\n  ]" if revisions else "[]"
    return f'{head},\n  "revisions": {body}\n}}\n'


def _findings(r: RevisionAudit) -> str:
    if not r.findings:
        return "-"
    worst = min(r.findings, key=lambda f: SEVERITIES.index(f.severity))
    return f"{len(r.findings)} ({worst.severity})"


def table_rows(report: results.AuditReport) -> list[list[str]]:
    return [
        [
            r.row.repo_id,
            r.row.commit[:12],
            r.kind,
            str(r.effective.license.license_class),
            r.effective.license.spdx,
            r.openness.verdict,
            r.openness.mof_class,
            _findings(r),
            r.decision.action if r.compliant else f"{r.decision.action} (VIOLATION)",
        ]
        for r in report.revisions
    ]


def notes(report: results.AuditReport) -> list[str]:
    """What a person should read under the table: inherited terms, conflicts, problems."""
    lines = []
    for r in report.revisions:
        where = f"{r.row.repo_id}@{r.row.commit[:12]}"
        if r.effective.license.key != r.declared.license.key:
            lines.append(
                f"{where}: class {r.effective.license.license_class}: {r.effective.reason}"
            )
        if r.declared.conflict:
            lines.append(f"{where}: {r.declared.conflict}")
        lines += [
            f"{where}: {f.severity}: {f.path}: {f.detail}"
            for f in r.findings
            if f.severity in ("critical", "high")
        ]
        if r.decision.action != "allow":
            lines.append(r.decision.message)
    return lines


def verdict_line(report: results.AuditReport) -> str:
    n = len(report.revisions)
    if report.compliant:
        return f"{n} revision(s) audited: compliant"
    return f"{n} revision(s) audited: {len(report.violations)} violation(s)"


def _details(r: RevisionAudit) -> list[tuple[str, str]]:
    eff, dec, op = r.effective, r.declared, r.openness
    rows = [
        ("Class", f"{eff.license.license_class} ({eff.license.spdx}): {eff.reason}"),
        ("Declared", f"{dec.license.key} ({dec.license.spdx}): {dec.reason}"),
        (
            "Sources",
            "; ".join(
                f"{d.source} = {d.value!r} -> {d.license.key if d.license else 'not recognised'}"
                for d in dec.declarations
            )
            or "none",
        ),
    ]
    if dec.conflict:
        rows.append(("Conflict", dec.conflict))
    if eff.ancestors:
        rows.append(
            (
                "Lineage",
                "; ".join(
                    f"{a.via} is {a.relation} of {a.repo} "
                    + (
                        f"({a.license.key}, {a.license.license_class})"
                        if a.commit
                        else "(not in the catalog)"
                    )
                    for a in eff.ancestors
                ),
            )
        )
    rows += [
        ("Verdict", f"{op.verdict}: " + "; ".join(op.reasons)),
        (
            "MOF class",
            f"{op.mof_class}"
            + (f"; missing for the next class: {', '.join(op.missing)}" if op.missing else ""),
        ),
        (
            "Evidence",
            "; ".join(f"{e.component}: {e.detail}" for e in op.evidence if e.found) or "none",
        ),
        (
            "Findings",
            "; ".join(f"{f.severity} {f.check} {f.path}: {f.detail}" for f in r.findings) or "none",
        ),
        ("Decision", r.decision.message),
        ("Compliant", _compliance(r)),
    ]
    return rows


def _compliance(r: RevisionAudit) -> str:
    if r.compliant:
        return "yes"
    reasons = ["denied by the policy"] if r.decision.action == "deny" else []
    if r.critical:
        reasons.append("critical findings (never compliant, whatever the policy)")
    return "no: " + " and ".join(reasons)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: results.AuditReport) -> str:
    out = [
        "# hubd compliance audit",
        "",
        f"Generated {report.generated_at.isoformat()} by hubd {report.version}; "
        f"policy: {report.policy or 'none'}.",
        "",
        f"**{verdict_line(report)}**",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table_rows(report)]
    for r in report.revisions:
        out += ["", f"## {r.row.repo_id} @ {r.row.commit[:12]}", ""]
        out += [f"- **{label}:** {_md(text)}" for label, text in _details(r)]
    return "\n".join(out) + "\n"


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d232a;max-width:1200px}
h1{font-size:1.5rem}table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}code{font-size:.9em}.ok{color:#176f2c}.bad{color:#b3261e;font-weight:600}
.review{color:#8a5a00}details{margin:.4rem 0;border:1px solid #d0d7de;padding:.4rem .6rem}
summary{cursor:pointer;font-weight:600}dt{font-weight:600;margin-top:.3rem}dd{margin-left:1rem}
"""


def html(report: results.AuditReport) -> str:
    """One page, everything inline: URLs from cards are shown as text, never fetched or linked."""
    state = "ok" if report.compliant else "bad"
    rows = []
    for r, cells in zip(report.revisions, table_rows(report), strict=True):
        css = "bad" if not r.compliant else "review" if r.decision.action == "review" else "ok"
        tds = "".join(f"<td>{escape(c)}</td>" for c in cells[:-1])
        rows.append(f'<tr>{tds}<td class="{css}">{escape(cells[-1])}</td></tr>')
    details = []
    for r in report.revisions:
        items = "".join(
            f"<dt>{escape(label)}</dt><dd>{escape(text)}</dd>" for label, text in _details(r)
        )
        details.append(
            f"<details{'' if r.compliant else ' open'}><summary>{escape(r.row.repo_id)} @ "
            f"<code>{escape(r.row.commit)}</code>"
            f"</summary><dl>{items}</dl></details>"
        )
    summary = report.summary()
    counts = ", ".join(f"{escape(k)}: {v}" for k, v in summary["by_class"].items()) or "none"
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<title>hubd compliance audit</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>hubd compliance audit</h1>"
        f"<p>Generated {escape(report.generated_at.isoformat())} by hubd "
        f"{escape(report.version)}; policy: <code>{escape(report.policy or 'none')}</code>.</p>"
        f'<p class="{state}">{escape(verdict_line(report))}</p>'
        f"<p>By class: {counts}. Needing review: {summary['review']}. "
        f"Sources in conflict: {summary['conflicts']}.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<h2>Details</h2>{''.join(details)}"
        "</body></html>\n"
    )
