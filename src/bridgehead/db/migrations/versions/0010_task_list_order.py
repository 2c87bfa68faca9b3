"""tasks: the project index also carries ``id``, the tie-break of every task listing's order

``GET /tasks?project=…`` orders by ``created_time`` then ``id``; with ``(project_id, created_time)``
alone the database had to sort all of a project's tasks to return a page of 50. With the id in the
index the page is read straight off it, in either direction.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain index operations (no batch mode): nothing rebuilds a table, so triggers stay in place.
    op.create_index("ix_tasks_project_created_id", "tasks", ["project_id", "created_time", "id"])
    op.drop_index("ix_tasks_project_created", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_project_created", "tasks", ["project_id", "created_time"])
    op.drop_index("ix_tasks_project_created_id", table_name="tasks")
