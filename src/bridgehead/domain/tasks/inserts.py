"""Task and file rows written through Core: for inserts on hot paths, where the ORM's unit of work
(per-object state, per-column JSON serialisation at flush) cost more than the INSERT itself."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, Table, insert, inspect
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from bridgehead import jsonutil
from bridgehead.db.models.tasks import Task


class _JsonText(UserDefinedType[str]):
    """Already-serialised JSON: bound as-is with no cast, so the column's JSON type takes the text."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"


_TASKS = cast(Table, Task.__table__)
_JSON_COLUMNS = frozenset(c.name for c in _TASKS.columns if isinstance(c.type, JSON))
# The tasks table with its JSON columns typed as text that is already JSON.
_TASKS_ENCODED = sa_table(
    _TASKS.name,
    *[sa_column(c.name, _JsonText() if c.name in _JSON_COLUMNS else c.type) for c in _TASKS.columns],
)


def encode_tasks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task rows (column name -> value) with their JSON values serialised, ready for ``insert_tasks``.

    Can run before the write transaction. ``None`` stays SQL NULL so that ``IS NULL`` filters
    (unclaimed, no engine handle) keep working.
    """
    return [
        {k: (jsonutil.dumps_text(v) if k in _JSON_COLUMNS and v is not None else v) for k, v in row.items()}
        for row in rows
    ]


def insert_tasks(session: Session, encoded: list[dict[str, Any]]) -> None:
    insert_many(session, _TASKS_ENCODED, encoded)


def task_row(task: Task) -> dict[str, Any]:
    """Every column of a new (unsaved) task, by column name; the model's defaults fill what was not
    set, on the object too, so that it reads as the row the INSERT writes."""
    row: dict[str, Any] = {}
    for attr in inspect(Task).column_attrs:
        column = attr.columns[0]
        if attr.key not in task.__dict__:
            default = column.default
            value = None
            if default is not None and default.is_scalar:
                value = default.arg
            elif default is not None and default.is_callable:
                value = default.arg(None)
            setattr(task, attr.key, value)
        row[column.name] = getattr(task, attr.key)
    return row


def insert_many(session: Session, target: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT rows of the same columns with as few statements as the backend allows.

    On PostgreSQL with RETURNING, SQLAlchemy sends up to 1,000 rows per statement
    ("insertmanyvalues"); without it psycopg sends one statement per row, and the per-statement
    triggers keeping ``project_task_counts`` and ``folder_counts`` would fire per row.
    """
    if not rows:
        return
    many_rows = session.get_bind().dialect.name == "postgresql"
    statement = insert(target).returning(target.c.id) if many_rows else insert(target)
    for start in range(0, len(rows), 1000):
        result = session.execute(statement, rows[start : start + 1000])
        if many_rows:
            result.all()
