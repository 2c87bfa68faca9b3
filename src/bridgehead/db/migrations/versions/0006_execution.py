"""execution: the memoization table (identical jobs reuse earlier outputs).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridgehead.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "execution_memos",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=400), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("created_on", bridgehead.db.base.UTCDateTime(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_memos")),
        sa.UniqueConstraint("key", name=op.f("uq_execution_memos_key")),
    )
    with op.batch_alter_table("execution_memos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_execution_memos_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("execution_memos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_memos_task_id"))
    op.drop_table("execution_memos")
