"""card text fields and ls index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("model_cards", schema=None) as batch_op:
        batch_op.alter_column(
            "license", existing_type=sa.VARCHAR(length=100), type_=sa.Text(), existing_nullable=True
        )
        batch_op.alter_column(
            "license_name",
            existing_type=sa.VARCHAR(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "license_link",
            existing_type=sa.VARCHAR(length=500),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "base_model_relation",
            existing_type=sa.VARCHAR(length=40),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "pipeline_tag",
            existing_type=sa.VARCHAR(length=100),
            type_=sa.Text(),
            existing_nullable=True,
        )

    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.create_index("ix_revisions_repo_latest", ["repo_pk", "mirrored_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_index("ix_revisions_repo_latest")

    with op.batch_alter_table("model_cards", schema=None) as batch_op:
        batch_op.alter_column(
            "pipeline_tag",
            existing_type=sa.Text(),
            type_=sa.VARCHAR(length=100),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "base_model_relation",
            existing_type=sa.Text(),
            type_=sa.VARCHAR(length=40),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "license_link",
            existing_type=sa.Text(),
            type_=sa.VARCHAR(length=500),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "license_name",
            existing_type=sa.Text(),
            type_=sa.VARCHAR(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "license", existing_type=sa.Text(), type_=sa.VARCHAR(length=100), existing_nullable=True
        )
