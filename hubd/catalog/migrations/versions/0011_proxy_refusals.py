"""proxy refusals

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

proxy_refusals: what the pull-through refused before any byte, with the rule and its message.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "proxy_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.String(length=200), nullable=False),
        sa.Column("commit", sa.String(length=40), nullable=True),
        sa.Column("rule", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_proxy_refusals_time", "proxy_refusals", ["refused_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_proxy_refusals_time", table_name="proxy_refusals")
    op.drop_table("proxy_refusals")
