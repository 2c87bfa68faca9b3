"""project_task_counts: each project's number of tasks, kept by triggers on ``tasks``

``GET /tasks?project=…`` answers ``X-Total-Matching-Query``; with 100,000 tasks in a project the
COUNT behind it was most of the request (and of the database's work under a listing load). Like
``folder_counts`` (0009) the triggers count every writer inside its own transaction: API inserts,
batch expansion, cascaded deletes. A count that drops to zero deletes its row.

Note for later migrations: rebuilding ``tasks`` with SQLite batch mode drops these triggers; such a
migration must create them again.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER project_task_counts_insert AFTER INSERT ON tasks
    BEGIN
        INSERT INTO project_task_counts (project_id, tasks) VALUES (NEW.project_id, 1)
        ON CONFLICT (project_id) DO UPDATE SET tasks = tasks + 1;
    END""",
    """CREATE TRIGGER project_task_counts_delete AFTER DELETE ON tasks
    BEGIN
        UPDATE project_task_counts SET tasks = tasks - 1 WHERE project_id = OLD.project_id;
        DELETE FROM project_task_counts WHERE project_id = OLD.project_id AND tasks <= 0;
    END""",
    """CREATE TRIGGER project_task_counts_move AFTER UPDATE OF project_id ON tasks
    WHEN OLD.project_id IS NOT NEW.project_id
    BEGIN
        UPDATE project_task_counts SET tasks = tasks - 1 WHERE project_id = OLD.project_id;
        DELETE FROM project_task_counts WHERE project_id = OLD.project_id AND tasks <= 0;
        INSERT INTO project_task_counts (project_id, tasks) VALUES (NEW.project_id, 1)
        ON CONFLICT (project_id) DO UPDATE SET tasks = tasks + 1;
    END""",
]

# PostgreSQL counts per statement, from its transition table: a row trigger would update one counter
# row once per inserted task, and 10,000 updates of one row in one transaction (a batch expanding, a
# bulk insert) leave a chain of 10,000 row versions that each next update walks (seeding 100,000
# tasks took 114 s instead of 14). Rows go in project order so that two statements never take the
# same counters in opposite orders.
POSTGRES_TRIGGERS = [
    """CREATE FUNCTION project_task_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO project_task_counts (project_id, tasks)
        SELECT project_id, COUNT(*) FROM new_rows GROUP BY project_id ORDER BY project_id
        ON CONFLICT (project_id) DO UPDATE SET tasks = project_task_counts.tasks + EXCLUDED.tasks;
        RETURN NULL;
    END
    $$""",
    """CREATE FUNCTION project_task_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE project_task_counts AS c SET tasks = c.tasks - gone.n
        FROM (SELECT project_id, COUNT(*) AS n FROM old_rows GROUP BY project_id) AS gone
        WHERE c.project_id = gone.project_id;
        DELETE FROM project_task_counts
        WHERE tasks <= 0 AND project_id IN (SELECT project_id FROM old_rows);
        RETURN NULL;
    END
    $$""",
    """CREATE FUNCTION project_task_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE project_task_counts SET tasks = tasks - 1 WHERE project_id = OLD.project_id;
        DELETE FROM project_task_counts WHERE project_id = OLD.project_id AND tasks <= 0;
        INSERT INTO project_task_counts (project_id, tasks) VALUES (NEW.project_id, 1)
        ON CONFLICT (project_id) DO UPDATE SET tasks = project_task_counts.tasks + 1;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER project_task_counts_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION project_task_counts_added()""",
    """CREATE TRIGGER project_task_counts_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION project_task_counts_removed()""",
    """CREATE TRIGGER project_task_counts_move AFTER UPDATE OF project_id ON tasks
    FOR EACH ROW WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION project_task_counts_moved()""",
]


def upgrade() -> None:
    op.create_table(
        "project_task_counts",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("tasks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_project_task_counts")),
    )
    op.execute(
        "INSERT INTO project_task_counts (project_id, tasks) "
        "SELECT project_id, COUNT(*) FROM tasks GROUP BY project_id"
    )
    for statement in POSTGRES_TRIGGERS if _postgres() else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for name in ("project_task_counts_insert", "project_task_counts_delete", "project_task_counts_move"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON tasks" if _postgres() else ""))
    if _postgres():
        for function in ("added", "removed", "moved"):
            op.execute(f"DROP FUNCTION IF EXISTS project_task_counts_{function}()")
    op.drop_table("project_task_counts")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
