"""volumes: volumes, their members, and import/export transfers

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridgehead.db.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("access_mode", sa.String(length=2), nullable=False),
        sa.Column("service", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_on", bridgehead.db.base.UTCDateTime(), nullable=False),
        sa.Column("modified_on", bridgehead.db.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_volumes_owner")),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volumes_owner"), ["owner"], unique=False)

    op.create_table(
        "volume_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("volume_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("read", sa.Boolean(), nullable=False),
        sa.Column("copy", sa.Boolean(), nullable=False),
        sa.Column("write", sa.Boolean(), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_volume_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
            name=op.f("fk_volume_members_volume_id_volumes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_members")),
        sa.UniqueConstraint("volume_id", "user_id", name=op.f("uq_volume_members_volume_id")),
    )
    with op.batch_alter_table("volume_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_members_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_members_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "transfers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("volume_id", sa.Integer(), nullable=True),
        sa.Column("volume", sa.String(length=200), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("result_file", sa.String(length=24), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_on", bridgehead.db.base.UTCDateTime(), nullable=False),
        sa.Column("started_on", bridgehead.db.base.UTCDateTime(), nullable=True),
        sa.Column("finished_on", bridgehead.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_transfers_project_id_projects"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_transfers_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name=op.f("fk_transfers_volume_id_volumes"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
    )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transfers_project_id"), ["project_id"], unique=False)
        batch_op.create_index("ix_transfers_state_created", ["state", "created_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_transfers_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_transfers_volume_id"), ["volume_id"], unique=False)


def downgrade() -> None:
    op.drop_table("transfers")
    op.drop_table("volume_members")
    op.drop_table("volumes")
