"""The ``bridgehead`` command line: serve, admin (users, tokens)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.orm import Session

from bridgehead import __version__
from bridgehead.config import Settings
from bridgehead.db import migrate
from bridgehead.db.session import Database
from bridgehead.domain import users

app = typer.Typer(
    help="bridgehead: the Seven Bridges API v2, self-hosted, running CWL for real.",
    no_args_is_help=True,
    add_completion=False,
)
admin = typer.Typer(help="Manage users and tokens.", no_args_is_help=True)
app.add_typer(admin, name="admin")
console = Console(stderr=True, soft_wrap=True)  # never wrap: paths and commands get copy-pasted

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory [env BRIDGEHEAD_DATA_DIR]")]
DbUrl = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL [env BRIDGEHEAD_DATABASE_URL]")
]


def load_settings(**given: Any) -> Settings:
    """CLI values win over ``BRIDGEHEAD_*`` variables, which win over the defaults.

    An invalid value (``--engine bogus``, ``BRIDGEHEAD_PORT=abc``) is reported by name, without a traceback.
    """
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            console.print(
                f"[red]error:[/] invalid setting {name} (--{name.replace('_', '-')} or "
                f"BRIDGEHEAD_{name.upper()}): {err['msg']}"
            )
        raise typer.Exit(2)


# Connections a long-running process keeps open. SQLAlchemy closes every connection beyond the pool's
# size when it is returned, so a pool smaller than the usual number of concurrent requests (or loop
# threads) opened a new PostgreSQL connection, and PostgreSQL forked a new backend, on most requests.
SERVICE_POOL = 8


# A worker's default CPU priority. On a host that runs API servers too, a backlog being drained took
# the CPU that requests wait for: at nice 10 the worker gets what the API leaves (on a host of its
# own it changes nothing). Runs of the local engine inherit it.
WORKER_NICE = 10


def prepare(settings: Settings, pool_size: int = 2) -> Database:
    """Create the data dir and bring the schema up to date; refuse with a clear message if we cannot.

    ``pool_size``: 2 for one-off commands, ``SERVICE_POOL`` for the server and the worker.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        migrate.upgrade(settings.resolved_database_url)
    except Exception as exc:  # a database we cannot reach or migrate: say what to fix
        console.print(f"[red]error:[/] cannot prepare the database {_safe_url(settings)}: {exc}")
        console.print("Check --database-url / BRIDGEHEAD_DATABASE_URL and that the server is reachable.")
        raise typer.Exit(2)
    return Database(settings.resolved_database_url, pool_size=pool_size)


def _safe_url(settings: Settings) -> str:
    url = settings.resolved_database_url
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="bind address [env BRIDGEHEAD_HOST, default 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port [env BRIDGEHEAD_PORT, default 8080]")] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    public_url: Annotated[str | None, typer.Option(help="base URL clients use, for hrefs")] = None,
    tls_self_signed: Annotated[
        bool | None, typer.Option("--tls-self-signed", help="serve https with a generated certificate")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    engine: Annotated[str | None, typer.Option(help="execution engine: local, fake, toil, slurm")] = None,
    forwarded_allow_ips: Annotated[
        str | None, typer.Option(help="trust X-Forwarded-* from these proxies")
    ] = None,
    dispatcher: Annotated[
        bool | None,
        typer.Option("--dispatcher/--no-dispatcher", help="run the task dispatcher in this process"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="API processes [env BRIDGEHEAD_WORKERS, default 1]; with more than one, the dispatcher "
            "runs in the parent process"
        ),
    ] = None,
) -> None:
    """Run the API server (migrations are applied first)."""
    import uvicorn

    from bridgehead.main import create_app
    from bridgehead.tls import ensure_self_signed
    from bridgehead.tuning import tune_malloc

    settings = load_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        public_url=public_url,
        tls_self_signed=tls_self_signed,
        tls_cert=tls_cert,
        tls_key=tls_key,
        engine=engine,
        forwarded_allow_ips=forwarded_allow_ips,
        dispatcher=dispatcher,
        workers=workers,
    )
    problems = settings.unsafe_reasons()
    if settings.dispatcher and not problems:
        from bridgehead.workers.worker import engine_problems

        problems = engine_problems(settings)
    if problems:
        for p in problems:
            console.print(f"[red]error:[/] {p}")
        raise typer.Exit(2)
    db = prepare(settings, SERVICE_POOL)
    with db.write() as s:
        if users.count_users(s) == 0:
            user = users.create_user(s, "admin", is_admin=True)
            token = users.add_token(s, user)
            console.print("First start: created the admin user [bold]admin[/]. Its API token (shown once):")
            typer.echo(token)
    ssl: dict[str, Any] = {}
    if settings.tls_self_signed:
        cert, key = ensure_self_signed(settings.tls_dir, settings.host)
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    elif settings.tls_cert and settings.tls_key:
        ssl = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    scheme = "https" if ssl else "http"
    shown_host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host
    url = (settings.public_url or f"{scheme}://{shown_host}:{settings.port}").rstrip("/").removesuffix(
        "/v2"
    ) + "/v2"
    processes = f", {settings.workers} API processes" if settings.workers > 1 else ""
    console.print(
        f"bridgehead {__version__} listening on [bold]{url}[/] (engine {settings.engine}, "
        f"data {settings.data_dir.resolve()}{processes})"
    )
    if settings.tls_self_signed:
        console.print(f"  export REQUESTS_CA_BUNDLE={Path(ssl['ssl_certfile']).resolve()}")
    console.print(
        f"  python -c \"import sevenbridges as sbg; print(sbg.Api(url='{url}', token='<token>').users.me())\""
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.workers > 1:
        _serve_processes(settings, db, ssl)
        return
    application = create_app(settings, db)
    tune_malloc()
    uvicorn.run(application, **_uvicorn_options(settings, ssl))


def _uvicorn_options(settings: Settings, ssl: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        # X-Forwarded-* is interpreted by api/urls.py against the real peer address; uvicorn's own
        # rewriting would replace that peer with the X-Forwarded-For value before we could check it.
        "proxy_headers": False,
        # Idle keep-alive clients must not hold a SIGTERM'd server open for the default 30 s.
        "timeout_graceful_shutdown": 5,
        **ssl,
    }


def _serve_processes(settings: Settings, db: Database, ssl: dict[str, Any]) -> None:
    """``serve --workers N``: N API processes on one port; the dispatcher and transfers run here.

    The children get these settings (already resolved) with the dispatcher off and the address of
    this process's wake-up socket, so that a queued task is picked up at once.
    """
    import os

    import uvicorn

    from bridgehead.main import PARENT_ENV, SETTINGS_ENV
    from bridgehead.workers.lifecycle import start_loops
    from bridgehead.workers.wakeup import WakeListener

    loops = start_loops(settings, db) if settings.dispatcher else None
    listener = WakeListener(loops.wake_handlers()).start() if loops is not None else None
    child = settings.model_copy(
        update={"dispatcher": False, "wake_address": listener.address if listener else None}
    )
    os.environ[SETTINGS_ENV] = child.model_dump_json()
    os.environ[PARENT_ENV] = str(os.getpid())
    try:
        uvicorn.run(
            "bridgehead.main:api_process_app",
            factory=True,
            workers=settings.workers,
            **_uvicorn_options(settings, ssl),
        )
    finally:
        if listener is not None:
            listener.stop()
        if loops is not None:
            loops.stop()
        db.dispose()


@app.command()
def worker(
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    engine: Annotated[str | None, typer.Option(help="execution engine: local, fake, toil, slurm")] = None,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="stable worker id (default: host, engine, pid, random tag)")
    ] = None,
    probe: Annotated[
        bool, typer.Option("--probe/--no-probe", help="check by a tiny batch job that the work dir is shared")
    ] = True,
    heartbeat: Annotated[float, typer.Option(help="seconds between heartbeats")] = 2.0,
    dead_after: Annotated[
        float, typer.Option(help="seconds of silence after which a worker's tasks are taken over")
    ] = 15.0,
    nice: Annotated[
        int,
        typer.Option(
            min=0, max=19, help="CPU priority (nice value, at least): below the API's, for hosts running both"
        ),
    ] = WORKER_NICE,
) -> None:
    """Run the task dispatcher and volume transfers, no API (workers and API servers share a PostgreSQL)."""
    import signal

    from bridgehead import tuning

    # First: the start-up (imports, checks, migrations) already yields to the API. Before any thread
    # starts, as threads and the runs of the local engine inherit it.
    tuning.lower_priority(nice)
    from bridgehead.workers.worker import ClusterWorker, WorkerConflict, engine_problems

    settings = load_settings(data_dir=data_dir, database_url=database_url, engine=engine)
    if not 0 < heartbeat < dead_after:
        console.print("[red]error:[/] --heartbeat must be positive and shorter than --dead-after")
        raise typer.Exit(2)
    problems = engine_problems(settings, probe=probe)
    if problems:
        for p in problems:
            console.print(f"[red]error:[/] {p}")
        raise typer.Exit(2)
    db = prepare(settings, SERVICE_POOL)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = ClusterWorker(settings, db, worker_id=worker_id, heartbeat=heartbeat, dead_after=dead_after)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop_event.set())
    console.print(f"bridgehead worker {runner.id} (engine {settings.engine}, database {_safe_url(settings)})")
    try:
        runner.run()
    except WorkerConflict as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    if runner.lost:
        raise typer.Exit(3)


@contextmanager
def admin_session(data_dir: Path | None, database_url: str | None) -> Iterator[Session]:
    """A write transaction for one admin command; a domain error becomes one red line and exit 1."""
    db = prepare(load_settings(data_dir=data_dir, database_url=database_url))
    try:
        with db.write() as s:
            yield s
    except users.SbgErrors as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1)


@admin.command("create-user")
def create_user(
    username: str,
    email: Annotated[str, typer.Option(help="e-mail address")] = "",
    is_admin: Annotated[bool, typer.Option("--admin", help="make the user a site admin")] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a user; its new API token is printed alone on the last line."""
    with admin_session(data_dir, database_url) as s:
        token = users.add_token(s, users.create_user(s, username, email=email, is_admin=is_admin))
    console.print(f"created user {username}{' (admin)' if is_admin else ''}")
    typer.echo(token)


@admin.command("create-token")
def create_token(username: str, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Add an API token to a user; printed alone on the last line."""
    with admin_session(data_dir, database_url) as s:
        token = users.add_token(s, users.get_by_username(s, username))
    typer.echo(token)


@admin.command("list-users")
def list_users(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """List users."""
    from rich.table import Table

    db = prepare(load_settings(data_dir=data_dir, database_url=database_url))
    table = Table("username", "email", "admin", "created")
    with db.read() as s:
        for u in users.list_users(s):
            table.add_row(
                u.username, u.email, "yes" if u.is_admin else "", u.created_on.strftime("%Y-%m-%d %H:%M")
            )
    Console().print(table)


@admin.command("set-public")
def set_public(
    project: Annotated[str, typer.Argument(help="project id OWNER/PROJECT")],
    off: Annotated[bool, typer.Option("--off", help="take the project out of the public gallery")] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Mark a project public: its apps join the gallery (GET /apps?visibility=public), readable by all."""
    from bridgehead.domain import projects
    from bridgehead.domain.errors import NotFound

    with admin_session(data_dir, database_url) as s:
        found = projects.find_project(s, project)
        if found is None:
            raise NotFound(f"Project {project} does not exist.", code=3002)
        projects.set_public(s, found, not off)
    console.print(f"project {project} is now {'private' if off else 'public'}")


@app.command("task-bundle")
def task_bundle(
    task_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write [task-<id>.tar.gz]")
    ] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Write a task's diagnostics bundle (task, app, inputs, job and engine logs) as one .tar.gz."""
    from bridgehead.db.models.tasks import Task
    from bridgehead.domain import bundles
    from bridgehead.storage.blobs import store_for

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db = prepare(settings)
    target = output or Path(f"task-{task_id}.tar.gz")
    api = (settings.public_url or f"http://localhost:{settings.port}").rstrip("/").removesuffix("/v2") + "/v2"
    with db.read() as s:
        task = s.get(Task, task_id)
        if task is None:
            console.print(f"[red]error:[/] task {task_id} does not exist in {_safe_url(settings)}")
            raise typer.Exit(1)
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as out:
            bundles.write(s, settings, store_for(settings), task, api, out)
        tmp.replace(target)
    console.print(f"wrote {target} ({target.stat().st_size} bytes)")
    typer.echo(str(target))


def main() -> None:
    app(prog_name="bridgehead")


if __name__ == "__main__":  # pragma: no cover
    main()
