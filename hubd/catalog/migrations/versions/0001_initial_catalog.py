"""initial catalog

Revision ID: 0001
Revises:
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "repos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repo_id"),
    )
    op.create_table(
        "refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("commit", sa.String(length=40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["repo_pk"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repo_pk", "name"),
    )
    with op.batch_alter_table("refs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refs_repo_pk"), ["repo_pk"], unique=False)

    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_pk", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("mirrored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_endpoint", sa.String(length=500), nullable=False),
        sa.Column("is_adapter", sa.Boolean(), nullable=False),
        sa.Column("base_model", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["repo_pk"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repo_pk", "commit"),
    )
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revisions_base_model"), ["base_model"], unique=False)
        batch_op.create_index(batch_op.f("ix_revisions_repo_pk"), ["repo_pk"], unique=False)

    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_pk", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("git_oid", sa.String(length=40), nullable=True),
        sa.Column("lfs", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["revision_pk"], ["revisions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["blobs.sha256"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("revision_pk", "path"),
    )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_files_revision_pk"), ["revision_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_files_sha256"), ["sha256"], unique=False)

    op.create_table(
        "model_cards",
        sa.Column("revision_pk", sa.Integer(), nullable=False),
        sa.Column("license", sa.String(length=100), nullable=True),
        sa.Column("license_name", sa.String(length=200), nullable=True),
        sa.Column("license_link", sa.String(length=500), nullable=True),
        sa.Column("base_model", sa.JSON(), nullable=False),
        sa.Column("base_model_relation", sa.String(length=40), nullable=True),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("pipeline_tag", sa.String(length=100), nullable=True),
        sa.Column("language", sa.JSON(), nullable=False),
        sa.Column("gated", sa.String(length=20), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["revision_pk"], ["revisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("revision_pk"),
    )
    with op.batch_alter_table("model_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_cards_license"), ["license"], unique=False)

    op.create_table(
        "provenance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_pk", sa.Integer(), nullable=False),
        sa.Column("hop", sa.Integer(), nullable=False),
        sa.Column("source_url", sa.String(length=1000), nullable=False),
        sa.Column("commit", sa.String(length=40), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["revision_pk"], ["revisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("provenance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provenance_revision_pk"), ["revision_pk"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("provenance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provenance_revision_pk"))

    op.drop_table("provenance")
    with op.batch_alter_table("model_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_cards_license"))

    op.drop_table("model_cards")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_files_sha256"))
        batch_op.drop_index(batch_op.f("ix_files_revision_pk"))

    op.drop_table("files")
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revisions_repo_pk"))
        batch_op.drop_index(batch_op.f("ix_revisions_base_model"))

    op.drop_table("revisions")
    with op.batch_alter_table("refs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refs_repo_pk"))

    op.drop_table("refs")
    op.drop_table("repos")
    op.drop_table("blobs")
