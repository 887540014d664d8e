"""ref log

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

ref_log: every commit a ref was recorded at, so `commits/{ref}` lists that ref's history rather
than every revision of the repo. Filled with each ref's current commit.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "ref_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("commit", sa.String(length=40), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["repo_pk"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ref_log_repo_name", "ref_log", ["repo_pk", "name", "commit"])
    op.execute(
        'INSERT INTO ref_log (repo_pk, name, "commit", logged_at) '
        'SELECT repo_pk, name, "commit", updated_at FROM refs'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_ref_log_repo_name", table_name="ref_log")
    op.drop_table("ref_log")
