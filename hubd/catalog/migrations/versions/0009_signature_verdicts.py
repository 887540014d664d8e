"""signature verdicts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

signature_verdicts: signatures a node verified, so an audit with a signature rule reads them
instead of verifying 10,000 bundles again (models.SignatureVerdict).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "signature_verdicts",
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_hint", sa.String(length=64), nullable=False),
        sa.Column("files_sha256", sa.String(length=64), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node", "bundle_sha256", "key_hint", "files_sha256"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("signature_verdicts")
