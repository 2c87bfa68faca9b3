"""Bulk file calls (``/bulk/files/*``) and async file jobs (``/async/files/*``).

Bulk answers ``{"items": [{"resource": …} | {"error": …}]}`` in request order; ``fields`` applies to
each resource and may carry a ``resource.`` prefix.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from bridgehead.api.deps import CtxDep
from bridgehead.api.fields import FieldSelector
from bridgehead.api.pagination import Page, page_params
from bridgehead.db.models import File
from bridgehead.db.models.uploads import AsyncJob
from bridgehead.domain import asyncjobs, files
from bridgehead.domain.errors import BadRequest, SbgError
from bridgehead.schemas.common import Wire, fmt_dt
from bridgehead.schemas.files import file_out
from bridgehead.storage.blobs import store_for

router = APIRouter(tags=["bulk"])

PageDep = Annotated[Page, Depends(page_params)]


class FileIds(Wire):
    file_ids: Any = None


class Items(Wire):
    items: Any = None


def _renderer(ctx: CtxDep, session: Session) -> asyncjobs.Render:
    projects: dict[int, str] = {}

    def render(f: File) -> dict[str, Any]:
        if f.project_id not in projects:
            projects[f.project_id] = files.project_sbg_id(session, f.project_id)
        return file_out(ctx.api, f, projects[f.project_id])

    return render


def _envelope(request: Request, outcomes: list[Any], render: asyncjobs.Render) -> dict[str, Any]:
    selector = FieldSelector.parse(request.query_params.get("fields"), prefix="resource.")
    items = []
    for outcome in outcomes:
        if isinstance(outcome, SbgError):
            items.append(asyncjobs.error_entry(outcome))
        else:
            items.append({"resource": selector.apply(render(outcome))})
    return {"items": items}


def _ids(body: FileIds | None) -> list[Any]:
    return asyncjobs.check_items(body.file_ids if body else None, "file_ids")


@router.post("/bulk/files/get", summary="Details of up to 100 files")
def bulk_get(request: Request, ctx: CtxDep, body: FileIds | None = None) -> Response:
    ids = _ids(body)
    with ctx.db.read() as s:
        outcomes = asyncjobs.bulk_get(s, ctx.user, ids)
        data = _envelope(request, outcomes, _renderer(ctx, s))
    return ctx.raw(data)


@router.post("/bulk/files/delete", summary="Delete up to 100 files")
def bulk_delete(request: Request, ctx: CtxDep, body: FileIds | None = None) -> Response:
    ids = _ids(body)
    with ctx.db.write() as s:
        outcomes, keys = asyncjobs.bulk_delete(s, ctx.user, ids)
        data = _envelope(request, outcomes, _renderer(ctx, s))
    with ctx.db.write() as s:
        files.collect_blobs(s, store_for(ctx.settings), keys)
    return ctx.raw(data)


def _edit(request: Request, ctx: CtxDep, body: Items | None, merge: bool) -> Response:
    items = asyncjobs.check_items(body.items if body else None, "items")
    with ctx.db.write() as s:
        outcomes = asyncjobs.bulk_edit(s, ctx.user, items, merge)
        data = _envelope(request, outcomes, _renderer(ctx, s))
    return ctx.raw(data)


@router.post("/bulk/files/update", summary="Replace name, tags and metadata of many files")
def bulk_update(request: Request, ctx: CtxDep, body: Items | None = None) -> Response:
    return _edit(request, ctx, body, merge=False)


@router.post("/bulk/files/edit", summary="Merge name, tags and metadata into many files")
def bulk_edit(request: Request, ctx: CtxDep, body: Items | None = None) -> Response:
    return _edit(request, ctx, body, merge=True)


# --- async jobs ------------------------------------------------------------------------------------


def job_out(ctx: CtxDep, job: AsyncJob) -> dict[str, Any]:
    return {
        "href": ctx.href(f"/async/files/{job.type.lower()}/{job.id}"),
        "id": job.id,
        "type": job.type,
        "state": job.state,
        "result": list(job.result or []),
        "total_files": job.total_files,
        "completed_files": job.completed_files,
        "failed_files": job.failed_files,
        "started_on": fmt_dt(job.started_on),
        "finished_on": fmt_dt(job.finished_on),
    }


def _job_type(kind: str) -> str:
    job_type = kind.upper()
    if job_type not in asyncjobs.JOB_TYPES:
        raise BadRequest(f"Unknown async job type {kind!r}; use copy, move or delete.", field="type")
    return job_type


@router.get("/async/files", summary="The caller's async file jobs")
def list_jobs(ctx: CtxDep, page: PageDep) -> Response:
    with ctx.db.read() as s:
        rows, total = asyncjobs.list_jobs(s, ctx.user, page.offset, page.limit)
    return ctx.page([job_out(ctx, j) for j in rows], total, page)


@router.post("/async/files/{kind}", status_code=201, summary="Start an async copy, move or delete job")
def start_job(kind: str, ctx: CtxDep, body: Items | None = None) -> Response:
    job_type = _job_type(kind)
    items = asyncjobs.check_items(body.items if body else None, "items")
    with ctx.db.write() as s:
        job, keys = asyncjobs.run_job(s, ctx.user, job_type, items, _renderer(ctx, s))
        data = job_out(ctx, job)
    if keys:
        with ctx.db.write() as s:
            files.collect_blobs(s, store_for(ctx.settings), keys)
    return ctx.one(data, 201)


@router.get("/async/files/{kind}/{job_id}", summary="One async file job")
def get_job(kind: str, job_id: str, ctx: CtxDep) -> Response:
    job_type = _job_type(kind)
    with ctx.db.read() as s:
        job = asyncjobs.get_job(s, ctx.user, job_type, job_id)
    return ctx.one(job_out(ctx, job))
