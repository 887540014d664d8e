"""An audit's answers, per revision and overall, and their JSON (audit-report.schema.json)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .declared import Declared
from .facts import RevisionRow
from .inheritance import Effective
from .openness import Openness
from .policy import Decision
from .scan import Finding


@dataclass(frozen=True)
class RevisionAudit:
    row: RevisionRow
    declared: Declared
    effective: Effective
    openness: Openness
    findings: tuple[Finding, ...]
    decision: Decision

    @property
    def critical(self) -> bool:
        return any(f.severity == "critical" for f in self.findings)

    @property
    def compliant(self) -> bool:
        """Not denied by the policy and nothing that runs code on load, whatever the policy."""
        return self.decision.action != "deny" and not self.critical

    @property
    def kind(self) -> str:
        return "adapter" if self.row.is_adapter else "model"

    def to_json(self) -> dict[str, Any]:
        row, eff, op = self.row, self.effective, self.openness
        return {
            "repo": row.repo_id,
            "revision": row.commit,
            "refs": sorted(row.refs),
            "kind": self.kind,
            "mirrored_at": row.mirrored_at.isoformat(),
            "source": row.source,
            "class": str(eff.license.license_class),
            "spdx": eff.license.spdx,
            "license": eff.license.key,
            "licenses": [lic.spdx for lic in eff.licenses],
            "class_reason": eff.reason,
            "declared": {
                "class": str(self.declared.license.license_class),
                "spdx": self.declared.license.spdx,
                "license": self.declared.license.key,
                "reason": self.declared.reason,
                "conflict": self.declared.conflict,
                "sources": [d.to_json() for d in self.declared.declarations],
            },
            "lineage": [a.to_json() for a in eff.ancestors],
            "verdict": op.verdict,
            "verdict_reasons": list(op.reasons),
            "mof": {
                "class": op.mof_class,
                "evidence": [e.to_json() for e in op.evidence],
                "missing": list(op.missing),
            },
            "findings": [f.to_json() for f in self.findings],
            "decision": self.decision.to_json(),
            "compliant": self.compliant,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in row.files],
        }


@dataclass(frozen=True)
class AuditReport:
    generated_at: datetime
    version: str
    policy: str | None
    revisions: tuple[RevisionAudit, ...]

    @property
    def violations(self) -> list[RevisionAudit]:
        return [r for r in self.revisions if not r.compliant]

    @property
    def compliant(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        return {
            "revisions": len(self.revisions),
            "violations": len(self.violations),
            "review": sum(r.decision.action == "review" for r in self.revisions),
            "critical_findings": sum(r.critical for r in self.revisions),
            "conflicts": sum(r.declared.conflict is not None for r in self.revisions),
            "by_class": dict(
                sorted(
                    Counter(str(r.effective.license.license_class) for r in self.revisions).items()
                )
            ),
            "by_verdict": dict(sorted(Counter(r.openness.verdict for r in self.revisions).items())),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "hubd_version": self.version,
            "policy": self.policy,
            "compliant": self.compliant,
            "summary": self.summary(),
            "revisions": [r.to_json() for r in self.revisions],
        }
