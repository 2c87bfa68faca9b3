"""Snapshot every table of a server's database, to prove a failed request changed nothing."""

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
