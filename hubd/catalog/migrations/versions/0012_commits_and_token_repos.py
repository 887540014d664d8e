"""commits pushed to hubd and per-token repo globs

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

A revision pushed through the Hub's write API keeps its git parent, message and author (the
token's name), so the commit list shows its history; a token may be limited to repos matching
its globs. (Whether a ref is a branch or a tag is refs.kind, from 0008.)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("parent", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("author", sa.String(length=200), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("repos", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("repos")
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("author")
        batch.drop_column("message")
        batch.drop_column("parent")
