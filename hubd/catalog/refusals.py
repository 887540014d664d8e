"""What the pull-through refused: recorded for audits and the operations page."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .models import ProxyRefusal

MESSAGE_LIMIT = 2000  # characters of the refusal kept (a rule's message is a line or two)


def record_refusal(
    catalog: sessionmaker[Session],
    node: str,
    repo_id: str,
    commit: str | None,
    rule: str,
    message: str,
) -> None:
    """One refusal, in its own transaction (blocking)."""
    with catalog.begin() as session:
        session.add(
            ProxyRefusal(
                repo_id=repo_id,
                commit=commit,
                rule=rule,
                message=message[:MESSAGE_LIMIT],
                node=node,
            )
        )


def recent_refusals(session: Session, limit: int = 100) -> list[ProxyRefusal]:
    """The newest refusals first."""
    newest = select(ProxyRefusal).order_by(ProxyRefusal.refused_at.desc(), ProxyRefusal.id.desc())
    return list(session.scalars(newest.limit(limit)))
