"""The hand-written Alembic migrations must produce exactly the ORM models' schema.

A difference here means a migration file and a model disagree: a fresh install would then run with
a schema the code does not expect (missing column, wrong nullability, forgotten index).
"""

from __future__ import annotations

import pprint
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.pool import NullPool

import bridgehead.db.models  # noqa: F401  (registers every table)
from bridgehead.db import migrate
from bridgehead.db.base import Base, UTCDateTime
from tests.conftest import DB_KINDS, fresh_database_url


@pytest.fixture(params=DB_KINDS)
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = fresh_database_url(request.param) or f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _compare_type(
    context: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    # UTCDateTime is stored as the database's DATETIME/TIMESTAMP: compare what it decorates.
    if isinstance(metadata_type, UTCDateTime):
        return inspected_type._type_affinity is not metadata_type.impl._type_affinity  # type: ignore[no-any-return]
    return None  # default comparison


def _diffs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": _compare_type, "compare_server_default": False}
        )
        return list(compare_metadata(context, Base.metadata))


def test_migrations_match_the_models(migrated: Engine) -> None:
    diffs = _diffs(migrated)
    assert not diffs, "migrations and models differ:\n" + pprint.pformat(diffs, width=110)


def test_every_model_table_exists_after_upgrade(migrated: Engine) -> None:
    tables = set(inspect(migrated).get_table_names())
    missing = set(Base.metadata.tables) - tables
    assert not missing, f"tables without a migration: {sorted(missing)}"


def test_revision_chain_is_linear() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"several heads: {heads}"
    revisions = [rev.revision for rev in script.walk_revisions()]
    assert revisions[-1] == "0001"
    assert len(revisions) == len(set(revisions))


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert migrate.is_current(url)
