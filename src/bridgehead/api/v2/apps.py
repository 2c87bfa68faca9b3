"""Apps: install and revise CWL, read apps and revisions, list, copy and sync.

Paths are segment-counted: ``/apps/{o}/{p}/{a}`` is the latest revision and ``/apps/{o}/{p}/{a}/{rev}``
one revision; ``…/raw`` and ``…/actions/{copy,sync}`` exist in both forms. Fixed-suffix routes are
declared before ``/{rev}`` so that ``raw`` is never read as a revision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from bridgehead.api.deps import Ctx, CtxDep
from bridgehead.api.pagination import Page, page_params
from bridgehead.domain import apps, cwl
from bridgehead.domain.errors import BadRequest, PayloadTooLarge
from bridgehead.schemas.apps import AppCopy, app_out, raw_out


@asynccontextmanager
async def _warm_cwl(app: FastAPI) -> AsyncIterator[None]:
    """Parse the CWL schema in the background at startup, so the first install or task does not wait.

    Skipped with the fake engine (test servers, started often, that never execute CWL).
    """
    state = getattr(app.state, "bridgehead", None)
    if state is not None and state.settings.engine != "fake":
        cwl.warm_in_background()
    yield


router = APIRouter(prefix="/apps", tags=["apps"], lifespan=_warm_cwl)

PageDep = Annotated[Page, Depends(page_params)]
MAX_RAW_BYTES = 10 * 1024 * 1024


def _rev(value: str, app_id: str) -> int:
    if not value.isdigit():
        raise BadRequest(
            f"Malformed app id {app_id}/{value}: the revision must be a non-negative integer.",
            code=6011,
            field="revision",
        )
    return int(value)


def _wants_raw(ctx: Ctx) -> bool:
    fields = ctx.request.query_params.get("fields") or ""
    return any(f.strip() in ("_all", "raw") or f.strip().startswith("raw.") for f in fields.split(","))


@router.get("", summary="Apps in your projects, or the public gallery (visibility=public)")
def list_apps(
    ctx: CtxDep,
    page: PageDep,
    project: str | None = None,
    visibility: str | None = None,
    q: Annotated[list[str] | None, Query()] = None,
    id: Annotated[list[str] | None, Query()] = None,
) -> Response:
    with_raw = _wants_raw(ctx)
    with ctx.db.read() as s:
        rows, total = apps.list_apps(
            s,
            ctx.user,
            project=project,
            visibility=visibility,
            terms=[t for t in (q or []) if t.strip()],
            ids=id or [],
            offset=page.offset,
            limit=page.limit,
        )
        items = [app_out(ctx.api, a, apps.latest(s, a) if with_raw else None) for a in rows]
    return ctx.page(items, total, page)


async def _read_body(request: Request) -> bytes:
    """The raw request body, refused past 10 MiB without reading the rest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_RAW_BYTES:
        raise PayloadTooLarge(
            f"The app document is {int(declared)} bytes; the limit is {MAX_RAW_BYTES} bytes (10 MiB).",
            field="raw",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_RAW_BYTES:
            raise PayloadTooLarge(
                f"The app document is larger than the {MAX_RAW_BYTES}-byte (10 MiB) limit.", field="raw"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _install(ctx: Ctx, app_id: str, body: bytes, content_type: str | None, revision: int | None) -> Response:
    apps.parse_app_id(app_id, "app", revision_allowed=False)  # a bad id is reported before the body
    raw, source = cwl.parse_body(body, content_type)
    with ctx.db.write() as s:
        row, tool = apps.install(s, ctx.user, app_id, raw, source, revision)
        stored = raw_out(row.app, row)
        key = apps.revision_id(row.app, row.revision)
        kept = row.raw
    cwl.remember(key, kept, tool)
    return ctx.raw(stored)


@router.post("/{owner}/{project}/{name}/raw", summary="Install an app, or add its next revision")
async def install_app(owner: str, project: str, name: str, request: Request, ctx: CtxDep) -> Response:
    body = await _read_body(request)
    ctype = request.headers.get("content-type")
    return await run_in_threadpool(_install, ctx, f"{owner}/{project}/{name}", body, ctype, None)


@router.post("/{owner}/{project}/{name}/{revision}/raw", summary="Create exactly this revision (latest+1)")
async def create_revision(
    owner: str, project: str, name: str, revision: str, request: Request, ctx: CtxDep
) -> Response:
    app_id = f"{owner}/{project}/{name}"
    number = _rev(revision, app_id)
    body = await _read_body(request)
    ctype = request.headers.get("content-type")
    return await run_in_threadpool(_install, ctx, app_id, body, ctype, number)


def _raw(ctx: Ctx, app_id: str) -> Response:
    with ctx.db.read() as s:
        row = apps.resolve(s, ctx.user, app_id)
        return ctx.raw(raw_out(row.app, row))


@router.get("/{owner}/{project}/{name}/raw", summary="The latest revision's CWL")
def get_raw(owner: str, project: str, name: str, ctx: CtxDep) -> Response:
    return _raw(ctx, f"{owner}/{project}/{name}")


@router.get("/{owner}/{project}/{name}/{revision}/raw", summary="One revision's CWL")
def get_revision_raw(owner: str, project: str, name: str, revision: str, ctx: CtxDep) -> Response:
    app_id = f"{owner}/{project}/{name}"
    return _raw(ctx, f"{app_id}/{_rev(revision, app_id)}")


def _copy(ctx: Ctx, app_id: str, body: AppCopy | None) -> Response:
    body = body or AppCopy()
    with ctx.db.write() as s:
        row = apps.copy_app(s, ctx.user, app_id, project=body.project, name=body.name, strategy=body.strategy)
        data = app_out(ctx.api, row.app, row)
    return ctx.one(data)


def _sync(ctx: Ctx, app_id: str) -> Response:
    with ctx.db.write() as s:
        row = apps.sync_app(s, ctx.user, app_id)
        data = app_out(ctx.api, row.app, row)
    return ctx.one(data)


@router.post("/{owner}/{project}/{name}/actions/copy", summary="Copy the latest revision's app")
def copy_app(owner: str, project: str, name: str, ctx: CtxDep, body: AppCopy | None = None) -> Response:
    return _copy(ctx, f"{owner}/{project}/{name}", body)


@router.post("/{owner}/{project}/{name}/{revision}/actions/copy", summary="Copy from one revision")
def copy_revision(
    owner: str, project: str, name: str, revision: str, ctx: CtxDep, body: AppCopy | None = None
) -> Response:
    app_id = f"{owner}/{project}/{name}"
    return _copy(ctx, f"{app_id}/{_rev(revision, app_id)}", body)


@router.post("/{owner}/{project}/{name}/actions/sync", summary="Catch a copy up with its source")
def sync_app(owner: str, project: str, name: str, ctx: CtxDep) -> Response:
    return _sync(ctx, f"{owner}/{project}/{name}")


@router.post("/{owner}/{project}/{name}/{revision}/actions/sync", summary="Catch a copy up with its source")
def sync_revision(owner: str, project: str, name: str, revision: str, ctx: CtxDep) -> Response:
    app_id = f"{owner}/{project}/{name}"
    return _sync(ctx, f"{app_id}/{_rev(revision, app_id)}")


def _get(ctx: Ctx, app_id: str) -> Response:
    with ctx.db.read() as s:
        row = apps.resolve(s, ctx.user, app_id)
        return ctx.one(app_out(ctx.api, row.app, row))


@router.get("/{owner}/{project}/{name}", summary="The latest revision of an app")
def get_app(owner: str, project: str, name: str, ctx: CtxDep) -> Response:
    return _get(ctx, f"{owner}/{project}/{name}")


@router.get("/{owner}/{project}/{name}/{revision}", summary="One revision of an app")
def get_revision(owner: str, project: str, name: str, revision: str, ctx: CtxDep) -> Response:
    app_id = f"{owner}/{project}/{name}"
    return _get(ctx, f"{app_id}/{_rev(revision, app_id)}")
