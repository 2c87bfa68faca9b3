"""Database checks behind the API: snapshots (a failed request changed nothing) and kept counts."""

from __future__ import annotations

import hashlib

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool


def snapshot(url: str) -> dict[str, str]:
    """Table name -> digest of its sorted rows."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        out: dict[str, str] = {}
        with engine.connect() as conn:
            for table in sorted(inspect(conn).get_table_names()):
                if table == "alembic_version":
                    continue
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).fetchall()
                digest = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
                out[table] = f"{len(rows)}:{digest}"
        return out
    finally:
        engine.dispose()


def assert_same_pairs(url: str, kept_sql: str, real_sql: str) -> None:
    """Two queries of (key, number) rows agree: a trigger-kept count table and the real COUNT."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            kept = {k: n for k, n in conn.execute(text(kept_sql)).all()}
            real = {k: n for k, n in conn.execute(text(real_sql)).all()}
        assert kept == real
    finally:
        engine.dispose()
