"""revision time indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

GET /api/models sorted by time (all repos, or one org's) walks these in order instead of sorting
every verified revision: 300 ms -> under 1 ms at 100,000 repos.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_revisions_state_time", "revisions", ["state", "mirrored_at", "id"])
    op.create_index(
        "ix_revisions_repo_state_time", "revisions", ["repo_pk", "state", "mirrored_at", "id"]
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_revisions_repo_state_time", table_name="revisions")
    op.drop_index("ix_revisions_state_time", table_name="revisions")
