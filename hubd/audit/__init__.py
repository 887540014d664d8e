"""Compliance audits: what hubd holds, under which terms, open source or only open weights, and
whether a policy allows it. Answers come from the catalog and the verified store, never the source.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial

from .. import __version__
from ..catalog.revisions import require_revision
from ..context import Context
from ..errors import NotFound
from .declared import DeclarationReader
from .facts import RevisionRow, SignatureCheck, head_finder, load_catalog
from .inheritance import Lineage, policy_facts
from .openness import assess
from .policy import Policy, decide, load_policy
from .results import AuditReport, RevisionAudit
from .scan import Scanner

__all__ = ["AuditReport", "RevisionAudit", "audit", "collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a report is built or rendered.

    An audit of 10,000 revisions makes about a million objects and frees almost none before
    it ends, so each collection walks them all again for nothing: a third to half of the
    audit's time (bench/audit.py). Reference counting still frees what is dropped; cycles
    made meanwhile are collected once the collector is back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def audit(
    ctx: Context,
    repo_id: str | None = None,
    revision: str | None = None,
    policy: Policy | None = None,
) -> AuditReport:
    """Audit every verified revision (or one repo, or one revision) against ``policy``.

    Without ``policy`` the file named by the ``audit.policy`` setting is used, if any.
    """
    if policy is None and ctx.settings.policy is not None:
        policy = load_policy(ctx.settings.policy)
    with collector_paused():
        return _audit(ctx, repo_id, revision, policy)


def _audit(
    ctx: Context, repo_id: str | None, revision: str | None, policy: Policy | None
) -> AuditReport:
    with ctx.catalog() as session:
        rows = load_catalog(session, repo_id)
        commit = None
        if repo_id is not None and revision is not None:
            commit = require_revision(session, repo_id, revision).commit
    targets = [row for row in rows if commit is None or row.commit == commit]
    if repo_id is not None and not targets:
        raise NotFound(f"{repo_id} is not in the catalog", hint="see `hubd ls`")
    scanner = Scanner(ctx.store)
    declared = DeclarationReader(scanner)
    lineage = Lineage(head_finder(ctx.catalog, rows, complete=repo_id is None), declared)
    signed = SignatureCheck(ctx)
    judged = tuple(_judge(row, lineage, declared, scanner, policy, signed) for row in targets)
    signed.save()
    return AuditReport(
        generated_at=datetime.now(UTC),
        version=__version__,
        policy=policy.source if policy else None,
        revisions=judged,
    )


def _judge(
    row: RevisionRow,
    lineage: Lineage,
    declared: DeclarationReader,
    scanner: Scanner,
    policy: Policy | None,
    signed: Callable[[RevisionRow], bool],
) -> RevisionAudit:
    effective = lineage.effective(row)
    return RevisionAudit(
        row=row,
        declared=declared(row),
        effective=effective,
        openness=assess(row, effective.license),
        findings=tuple(scanner.revision(row.files)),
        decision=decide(policy, policy_facts(row.repo_id, effective), partial(signed, row)),
    )
