"""Shared fixtures: a live server per test module (real uvicorn, real database, TLS self-signed).

Set ``ENGINE = "local"`` (or another engine) at module level to pick the server's engine; the
default is the fake engine; ``SERVER_WORKERS = 2`` gives the module's server two API processes.
With ``BRIDGEHEAD_TEST_POSTGRES_URL`` set (``make test`` does so under CI), every module that uses
``server`` runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sevenbridges as sbg

from bridgehead.embedded import EmbeddedServer
from bridgehead.tls import ensure_self_signed

PG_ADMIN_URL = os.environ.get("BRIDGEHEAD_TEST_POSTGRES_URL")
ROUTE_LOG = Path(__file__).resolve().parents[1] / ".bridgehead" / "route-log.txt"
DB_KINDS = ["sqlite"] + (["postgres"] if PG_ADMIN_URL else [])


def fresh_database_url(kind: str) -> str | None:
    """None for SQLite (the data dir's file); a new empty PostgreSQL database otherwise."""
    if kind == "sqlite":
        return None
    import psycopg

    assert PG_ADMIN_URL
    name = f"bh_{uuid.uuid4().hex[:12]}"
    plain = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One certificate for every test server, trusted through REQUESTS_CA_BUNDLE."""
    path = tmp_path_factory.mktemp("tls")
    cert, _ = ensure_self_signed(path)
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    return path


def start_server(
    tmp: Path, tls_dir: Path, engine: str = "fake", db_kind: str = "sqlite", **kwargs: object
) -> EmbeddedServer:
    data = tmp / f"data-{uuid.uuid4().hex[:6]}"
    (data / "tls").mkdir(parents=True)
    for name in ("cert.pem", "key.pem"):
        shutil.copy(tls_dir / name, data / "tls" / name)
    # Every test server records which route answered: `python -m bridgehead.fidelity` reads the log.
    env = dict(kwargs.pop("extra_env", None) or {})  # type: ignore[call-overload]
    env.setdefault("BRIDGEHEAD_ROUTE_LOG", str(ROUTE_LOG))
    ROUTE_LOG.parent.mkdir(exist_ok=True)
    srv = EmbeddedServer(
        engine=engine, data_dir=data, database_url=fresh_database_url(db_kind), extra_env=env, **kwargs
    )  # type: ignore[arg-type]
    return srv.start()


@pytest.fixture(scope="module", params=DB_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_dir: Path
) -> Iterator[EmbeddedServer]:
    engine = getattr(request.module, "ENGINE", "fake")
    extra_env = getattr(request.module, "SERVER_ENV", {})
    srv = start_server(
        tmp_path_factory.mktemp("srv"),
        tls_dir,
        engine=engine,
        db_kind=request.param,
        extra_env=dict(extra_env),
        workers=getattr(request.module, "SERVER_WORKERS", 1),
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api(server: EmbeddedServer) -> sbg.Api:
    """The unmodified official client, as the server's admin user."""
    return sbg.Api(url=server.url, token=server.token)


@pytest.fixture(scope="session")
def ssl_context(tls_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_dir / "cert.pem"))


@pytest.fixture(scope="module")
def http(server: EmbeddedServer, ssl_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    """Plain HTTP access with the admin token, for wire-level assertions."""
    with httpx.Client(
        base_url=server.url, verify=ssl_context, headers={"X-SBG-Auth-Token": server.token}, timeout=60
    ) as client:
        yield client


def user_api(server: EmbeddedServer, username: str) -> sbg.Api:
    """A second, non-admin user with its own client."""
    return sbg.Api(url=server.url, token=server.create_user(username))
