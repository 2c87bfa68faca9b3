"""apps: copy strategy and the searchable label/description on ``apps`` (tables exist since 0001).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridgehead.db.base  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("copy_strategy", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("label", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("description")
        batch_op.drop_column("label")
        batch_op.drop_column("copy_strategy")
