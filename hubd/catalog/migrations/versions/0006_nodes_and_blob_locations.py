"""nodes and blob locations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The last hop of a revision's provenance is a node of this catalog that recorded it, so its
# store holds the revision's blobs (earlier hops may be other catalogs' nodes).
LAST_HOP = "p.hop = (SELECT MAX(q.hop) FROM provenance q WHERE q.revision_pk = p.revision_pk)"


def upgrade() -> None:
    """Upgrade schema, then record what existing catalogs already know of who holds what."""
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "blob_locations",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["node"], ["nodes.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sha256", "node"),
    )
    op.create_index(op.f("ix_blob_locations_node"), "blob_locations", ["node"], unique=False)
    # S608: LAST_HOP is this migration's own constant SQL; nothing from outside is formatted in.
    op.execute(
        "INSERT INTO nodes (name, url, last_seen) SELECT p.node, NULL, MAX(p.fetched_at) "  # noqa: S608
        f"FROM provenance p WHERE {LAST_HOP} GROUP BY p.node"
    )
    op.execute(
        "INSERT INTO blob_locations (sha256, node) SELECT DISTINCT f.sha256, p.node "  # noqa: S608
        f"FROM files f JOIN provenance p ON p.revision_pk = f.revision_pk WHERE {LAST_HOP}"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_blob_locations_node"), table_name="blob_locations")
    op.drop_table("blob_locations")
    op.drop_table("nodes")
