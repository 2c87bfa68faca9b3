"""folder_counts on PostgreSQL: inserts and deletes counted per statement, not per row

A row trigger updated the parent folder's counter once per inserted file. Finishing 200 runs in one
transaction adds 200 output folders to one project root: 200 versions of one counter row, each
update walking the chain of the ones before, with the row locked for the whole transaction. Per
statement, from the transition table, that is one update per folder and statement. Moves keep
their row trigger (one file at a time, and a statement-level UPDATE trigger would run on every
update of ``files``). SQLite keeps its row triggers: it updates rows in place.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STATEMENT_TRIGGERS = [
    """CREATE FUNCTION folder_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO folder_counts (folder_id, children)
        SELECT parent_id, COUNT(*) FROM new_rows WHERE parent_id IS NOT NULL
        GROUP BY parent_id ORDER BY parent_id
        ON CONFLICT (folder_id) DO UPDATE SET children = folder_counts.children + EXCLUDED.children;
        RETURN NULL;
    END
    $$""",
    """CREATE FUNCTION folder_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE folder_counts AS c SET children = c.children - gone.n
        FROM (SELECT parent_id, COUNT(*) AS n FROM old_rows WHERE parent_id IS NOT NULL
              GROUP BY parent_id) AS gone
        WHERE c.folder_id = gone.parent_id;
        DELETE FROM folder_counts
        WHERE children <= 0 AND folder_id IN (SELECT parent_id FROM old_rows);
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER folder_counts_insert AFTER INSERT ON files
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION folder_counts_added()""",
    """CREATE TRIGGER folder_counts_delete AFTER DELETE ON files
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION folder_counts_removed()""",
]

ROW_TRIGGERS = [  # as 0009 created them
    """CREATE TRIGGER folder_counts_insert AFTER INSERT ON files
    FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL) EXECUTE FUNCTION folder_counts_keep()""",
    """CREATE TRIGGER folder_counts_delete AFTER DELETE ON files
    FOR EACH ROW WHEN (OLD.parent_id IS NOT NULL) EXECUTE FUNCTION folder_counts_keep()""",
]


def upgrade() -> None:
    if not _postgres():
        return
    op.execute("DROP TRIGGER folder_counts_insert ON files")
    op.execute("DROP TRIGGER folder_counts_delete ON files")
    for statement in STATEMENT_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if not _postgres():
        return
    op.execute("DROP TRIGGER folder_counts_insert ON files")
    op.execute("DROP TRIGGER folder_counts_delete ON files")
    op.execute("DROP FUNCTION folder_counts_added()")
    op.execute("DROP FUNCTION folder_counts_removed()")
    for statement in ROW_TRIGGERS:
        op.execute(statement)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
