"""App factory: routers under ``/v2``, middleware, error handlers, and the background dispatcher."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from bridgehead import __version__
from bridgehead.api import errors
from bridgehead.api.deps import AppState, SbgJSONResponse
from bridgehead.api.middleware import SbgHeadersMiddleware
from bridgehead.api.ratelimit import RateLimiter
from bridgehead.api.v2 import ROUTERS, root
from bridgehead.config import Settings
from bridgehead.db.session import Database
from bridgehead.workers import lifecycle

log = logging.getLogger(__name__)

# How `serve --workers N` hands its resolved settings and its pid to the API processes it starts.
SETTINGS_ENV = "BRIDGEHEAD_SERVE_SETTINGS"
PARENT_ENV = "BRIDGEHEAD_SERVE_PARENT"


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    database = db or Database(settings.resolved_database_url)
    state = AppState(
        settings=settings, db=database, limiter=RateLimiter(settings.rate_limit, settings.rate_limit_window)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        handle = lifecycle.start(state)
        try:
            yield
        finally:
            lifecycle.stop(state, handle)
            if db is None:
                database.dispose()

    app = FastAPI(
        title="bridgehead",
        version=__version__,
        description="Seven Bridges public API v2, self-hosted: projects, files, CWL apps and tasks that run.",
        default_response_class=SbgJSONResponse,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    if settings.wake_address:
        from bridgehead.workers.wakeup import WakeSender

        state.waker = WakeSender(settings.wake_address)
    app.state.bridgehead = state
    errors.install(app)

    healthy = b'{"status":"ok"}'

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # async and pre-rendered: probes and load balancers hit this often, keep it off the threadpool.
        return Response(healthy, media_type="application/json")

    # Each router is included straight into the app (no intermediate /v2 router): one nesting level
    # less for FastAPI to walk on every request.
    for router in ROUTERS:
        app.include_router(router, prefix="/v2")
    app.add_api_route(
        "/v2",
        root.root,
        methods=["GET"],
        tags=["users"],
        summary="Root resource: a map of the API's collections",
    )

    def openapi_document() -> dict[str, Any]:
        # Served at /openapi.json: the same adjusted document as the committed openapi.json.
        if app.openapi_schema is None:
            from bridgehead.openapi import document

            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi_document  # type: ignore[method-assign]
    app.add_middleware(SbgHeadersMiddleware, limiter=state.limiter, route_log=settings.route_log)
    return app


def api_process_app() -> FastAPI:
    """The app of one API process of ``serve --workers N`` (uvicorn calls this in each child).

    The settings are the parent's, already resolved from its options and environment; the child
    serves the API only and dies with the parent, which runs the dispatcher.
    """
    from bridgehead.tuning import die_with_parent, tune_malloc

    die_with_parent(int(os.environ[PARENT_ENV]))
    tune_malloc()
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    return create_app(settings)
