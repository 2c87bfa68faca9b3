"""tasks: drop the three single-column indexes that a composite index already leads with

``status`` is the first column of ``ix_tasks_status_claimed``, ``project_id`` of
``ix_tasks_project_created_id`` and ``parent_id`` of ``ix_tasks_parent_status``: each lookup the
single-column index served, its composite serves as well. Every task insert and every change of
status (three per run) wrote an entry into each of nine indexes; now six.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

REDUNDANT = {
    "ix_tasks_status": "status",
    "ix_tasks_project_id": "project_id",
    "ix_tasks_parent_id": "parent_id",
}


def upgrade() -> None:
    # Plain index operations (no batch mode): nothing rebuilds a table, so triggers stay in place.
    for name in REDUNDANT:
        op.drop_index(name, table_name="tasks")


def downgrade() -> None:
    for name, column in REDUNDANT.items():
        op.create_index(name, "tasks", [column])
