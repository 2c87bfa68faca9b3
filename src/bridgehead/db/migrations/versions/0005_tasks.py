"""tasks: the tasks table (single tasks, batch parents and children).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridgehead.db.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = bridgehead.db.base.UTCDateTime
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("app_id", sa.String(length=400), nullable=False),
        sa.Column("app_revision_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("executed_by", sa.String(length=64), nullable=True),
        sa.Column("created_time", dt(), nullable=False),
        sa.Column("queued_time", dt(), nullable=True),
        sa.Column("start_time", dt(), nullable=True),
        sa.Column("end_time", dt(), nullable=True),
        sa.Column("batch", sa.Boolean(), nullable=False),
        sa.Column("batch_input", sa.String(length=255), nullable=True),
        sa.Column("batch_by", sa.JSON(), nullable=True),
        sa.Column("batch_group", sa.JSON(), nullable=True),
        sa.Column("batch_disabled", sa.Boolean(), nullable=False),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("expanded", sa.Boolean(), nullable=False),
        sa.Column("use_interruptible_instances", sa.Boolean(), nullable=False),
        sa.Column("execution_settings", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("output_location", sa.JSON(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("execution_status", sa.JSON(), nullable=False),
        sa.Column("price", sa.JSON(), nullable=True),
        sa.Column("origin_id", sa.String(length=64), nullable=True),
        sa.Column("engine", sa.String(length=16), nullable=True),
        sa.Column("engine_handle", sa.JSON(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("abort_requested", sa.Boolean(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("output_folder", sa.String(length=24), nullable=True),
        sa.Column("jobs", sa.JSON(), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_tasks_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_created_time"), ["created_time"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_origin_id"), ["origin_id"], unique=False)
        batch_op.create_index("ix_tasks_status_claimed", ["status", "claimed_by"], unique=False)
        batch_op.create_index("ix_tasks_project_created", ["project_id", "created_time"], unique=False)
        batch_op.create_index("ix_tasks_parent_status", ["parent_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_table("tasks")
