"""folder_counts: each folder's number of direct children, kept by triggers on ``files``

Listing a folder answers ``X-Total-Matching-Query``; counting 100,000 children per request cost
tens of milliseconds. Triggers (not ORM hooks) keep the count, so bulk inserts and cascaded
deletes are counted too, inside the writing transaction. A count that drops to zero deletes its
row, so a folder emptied again leaves the table as it was.

Note for later migrations: rebuilding ``files`` with SQLite batch mode drops these triggers; such a
migration must create them again.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER folder_counts_insert AFTER INSERT ON files WHEN NEW.parent_id IS NOT NULL
    BEGIN
        INSERT INTO folder_counts (folder_id, children) VALUES (NEW.parent_id, 1)
        ON CONFLICT (folder_id) DO UPDATE SET children = children + 1;
    END""",
    """CREATE TRIGGER folder_counts_delete AFTER DELETE ON files WHEN OLD.parent_id IS NOT NULL
    BEGIN
        UPDATE folder_counts SET children = children - 1 WHERE folder_id = OLD.parent_id;
        DELETE FROM folder_counts WHERE folder_id = OLD.parent_id AND children <= 0;
    END""",
    """CREATE TRIGGER folder_counts_move AFTER UPDATE OF parent_id ON files
    WHEN OLD.parent_id IS NOT NEW.parent_id
    BEGIN
        UPDATE folder_counts SET children = children - 1 WHERE folder_id = OLD.parent_id;
        DELETE FROM folder_counts WHERE folder_id = OLD.parent_id AND children <= 0;
        INSERT INTO folder_counts (folder_id, children)
        SELECT NEW.parent_id, 1 WHERE NEW.parent_id IS NOT NULL
        ON CONFLICT (folder_id) DO UPDATE SET children = children + 1;
    END""",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION folder_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.parent_id IS NOT NULL THEN
            UPDATE folder_counts SET children = children - 1 WHERE folder_id = OLD.parent_id;
            DELETE FROM folder_counts WHERE folder_id = OLD.parent_id AND children <= 0;
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.parent_id IS NOT NULL THEN
            INSERT INTO folder_counts (folder_id, children) VALUES (NEW.parent_id, 1)
            ON CONFLICT (folder_id) DO UPDATE SET children = folder_counts.children + 1;
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER folder_counts_insert AFTER INSERT ON files
    FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL) EXECUTE FUNCTION folder_counts_keep()""",
    """CREATE TRIGGER folder_counts_delete AFTER DELETE ON files
    FOR EACH ROW WHEN (OLD.parent_id IS NOT NULL) EXECUTE FUNCTION folder_counts_keep()""",
    """CREATE TRIGGER folder_counts_move AFTER UPDATE OF parent_id ON files
    FOR EACH ROW WHEN (OLD.parent_id IS DISTINCT FROM NEW.parent_id) EXECUTE FUNCTION folder_counts_keep()""",
]


def upgrade() -> None:
    op.create_table(
        "folder_counts",
        sa.Column("folder_id", sa.String(length=24), nullable=False),
        sa.Column("children", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("folder_id", name=op.f("pk_folder_counts")),
    )
    op.execute(
        "INSERT INTO folder_counts (folder_id, children) "
        "SELECT parent_id, COUNT(*) FROM files WHERE parent_id IS NOT NULL GROUP BY parent_id"
    )
    for statement in POSTGRES_TRIGGERS if _postgres() else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for name in ("folder_counts_insert", "folder_counts_delete", "folder_counts_move"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON files" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION IF EXISTS folder_counts_keep()")
    op.drop_table("folder_counts")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
