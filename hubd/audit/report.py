"""Audit reports for people: table rows for the terminal, Markdown, and one self-contained HTML
page (inline style, no scripts, no external assets) a compliance officer can archive or mail.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .results import AuditReport, RevisionAudit
from .scan import SEVERITIES

HEADERS = ["Repo", "Revision", "Kind", "Class", "SPDX", "Verdict", "MOF", "Findings", "Decision"]


def to_json_text(report: AuditReport) -> str:
    """Indented, except that each revision is one line: greppable, and json's C encoder (which
    ``indent`` turns off) keeps a 10,000-revision report to a fraction of a second."""
    data = report.to_json()
    revisions = [json.dumps(r, separators=(", ", ": ")) for r in data.pop("revisions")]
    head = json.dumps(data, indent=2)[: -len("\n}")]
    body = "[\n    " + ",\n    ".join(revisions) + "\n  ]" if revisions else "[]"
    return f'{head},\n  "revisions": {body}\n}}\n'


def _findings(r: RevisionAudit) -> str:
    if not r.findings:
        return "-"
    worst = min(r.findings, key=lambda f: SEVERITIES.index(f.severity))
    return f"{len(r.findings)} ({worst.severity})"


def table_rows(report: AuditReport) -> list[list[str]]:
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


def notes(report: AuditReport) -> list[str]:
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


def verdict_line(report: AuditReport) -> str:
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


def markdown(report: AuditReport) -> str:
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


def html(report: AuditReport) -> str:
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
