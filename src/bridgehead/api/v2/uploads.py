"""Multipart upload: init, part URLs, the signed part PUT, reports, complete and abort."""

from __future__ import annotations

import asyncio
import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from bridgehead.api.deps import CtxDep, app_state
from bridgehead.api.pagination import Page, page_params
from bridgehead.db.models.uploads import Upload
from bridgehead.db.session import Database
from bridgehead.domain import files, transfer_urls, uploads
from bridgehead.domain.errors import BadRequest, NotFound
from bridgehead.schemas.common import fmt_dt
from bridgehead.schemas.files import file_out
from bridgehead.schemas.uploads import PartReport, UploadComplete, UploadInit, upload_out
from bridgehead.storage.blobs import store_for

router = APIRouter(tags=["uploads"])

PageDep = Annotated[Page, Depends(page_params)]
PART_KIND = "upload-part"
# Received chunks (tens of KiB each) are handed to a writer thread in batches of this size.
WRITE_BATCH = 1024 * 1024
MAX_IOVECS = 512  # below Linux's IOV_MAX (1024) for one pwritev
# Own threads for part writes: they must not wait behind (or hold up) the request handlers' pool.
_WRITERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="upload-write")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _out(ctx: CtxDep, upload: Upload, list_parts: bool = False) -> dict[str, Any]:
    with ctx.db.read() as s:
        rows = uploads.parts(s, upload.id)
        project = files.project_sbg_id(s, upload.project_id)
    listed = None
    if list_parts:
        listed = [
            {
                "part_number": p.part_number,
                "size": p.size,
                "etag": p.etag,
                "response": {"headers": {"ETag": p.etag}},
            }
            for p in rows
        ]
    return upload_out(ctx.api, upload, project, len(rows), listed)


@router.post("/upload/multipart", summary="Start a multipart upload (and reclaim abandoned ones)")
def init_upload(ctx: CtxDep, overwrite: str | None = None, body: UploadInit | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing request body: name, size and project or parent are required.", code=8013)
    with ctx.db.write() as s:
        upload = uploads.start(
            s,
            ctx.user,
            ctx.settings,
            project=body.project,
            parent=body.parent,
            name=body.name,
            size=body.size,
            part_size=body.part_size,
            overwrite=_flag(overwrite),
        )
        stale = uploads.purge_stale(s)  # housekeeping rides on a successful start only
    for stale_id in stale:
        uploads.remove_parts(ctx.settings, stale_id)
    return ctx.one(_out(ctx, upload))


@router.get("/upload/multipart", summary="The caller's ongoing uploads")
def list_uploads(ctx: CtxDep, page: PageDep) -> Response:
    with ctx.db.read() as s:
        rows, total = uploads.list_for(s, ctx.user, page.offset, page.limit)
    return ctx.page([_out(ctx, u) for u in rows], total, page)


@router.get("/upload/multipart/{upload_id}", summary="One upload (list_parts=true adds its parts)")
def get_upload(upload_id: str, ctx: CtxDep, list_parts: str | None = None) -> Response:
    with ctx.db.read() as s:
        upload = uploads.get(s, ctx.user, upload_id)
    return ctx.one(_out(ctx, upload, _flag(list_parts)))


@router.get("/upload/multipart/{upload_id}/part/{part_number}", summary="A signed URL to PUT one part to")
def part_url(upload_id: str, part_number: int, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        upload = uploads.get(s, ctx.user, upload_id)
        uploads.check_part_number(upload, part_number)
    expires, sig = transfer_urls.sign(ctx.settings, PART_KIND, f"{upload_id}/{part_number}")
    url = f"{ctx.api}/upload/transfer/{upload_id}/{part_number}?expires={expires}&signature={sig}"
    return ctx.raw(
        {
            "method": "PUT",
            "url": url,
            "expires": fmt_dt(datetime.fromtimestamp(expires, UTC)),
            "headers": {},
            "report": {"headers": ["ETag"], "body": {}},
            "success_codes": [200],
        }
    )


@router.post("/upload/multipart/{upload_id}/part", summary="Report an uploaded part (its ETag)")
def report_part(upload_id: str, ctx: CtxDep, body: PartReport | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing part report: part_number and response.headers.ETag.", code=8014)
    headers = (body.response or {}).get("headers")
    etag = headers.get("ETag") if isinstance(headers, dict) else None
    with ctx.db.write() as s:
        upload = uploads.get(s, ctx.user, upload_id)
        uploads.report_part(s, upload, body.part_number, etag)
    return ctx.no_content()


@router.post("/upload/multipart/{upload_id}/complete", summary="Assemble the parts into the file")
def complete_upload(upload_id: str, ctx: CtxDep, body: UploadComplete | None = None) -> Response:
    with ctx.db.read() as s:
        upload = uploads.get(s, ctx.user, upload_id)
        data_file = uploads.ready_data(s, ctx.settings, upload, body.parts if body else None)
        etags = {p.part_number: p.etag for p in uploads.parts(s, upload_id)}
    store = store_for(ctx.settings)
    key: str | None = None
    size = 0
    if upload.size > 0:
        key, size = uploads.assemble(store, data_file, upload, etags)
    try:
        with ctx.db.write() as s:
            created, project, old_key = uploads.finish(s, ctx.user, upload_id, key, size)
            data = file_out(ctx.api, created, project.sbg_id)
    except BaseException:
        with ctx.db.write() as s:
            files.collect_blobs(s, store, [key])
        raise
    uploads.remove_parts(ctx.settings, upload_id)
    if old_key and old_key != key:
        with ctx.db.write() as s:
            files.collect_blobs(s, store, [old_key])
    return ctx.one(data)


@router.delete("/upload/multipart/{upload_id}", status_code=204, summary="Abort an upload")
def abort_upload(upload_id: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        uploads.abort(s, ctx.user, upload_id)
    uploads.remove_parts(ctx.settings, upload_id)
    return ctx.no_content()


# --- the signed part PUT: no auth headers, the URL is the permission ------------------------------


def _lookup(db: Database, upload_id: str) -> Upload | None:
    with db.read() as s:
        upload = s.get(Upload, upload_id)
        if upload is not None:
            s.expunge(upload)
        return upload


def _store_part(db: Database, upload_id: str, number: int, size: int, etag: str | None) -> bool:
    """Record a received part (``etag``), or forget it (``None``) before a PUT rewrites its bytes.
    False when the upload no longer exists."""
    with db.write() as s:
        if s.get(Upload, upload_id) is None:
            return False
        if etag is None:
            uploads.forget_part(s, upload_id, number)
        else:
            uploads.record_part(s, upload_id, number, size, etag)
        return True


@router.put("/upload/transfer/{upload_id}/{part_number}", include_in_schema=False)
async def put_part(
    upload_id: str,
    part_number: int,
    request: Request,
    expires: Annotated[str | None, Query()] = None,
    signature: Annotated[str | None, Query()] = None,
) -> Response:
    """Stream one part to its offset in the upload's data file, computing its SHA-256 (the ETag).

    A declared wrong size is refused before any byte is written. The part's earlier record is
    dropped before its bytes are touched and the new one is recorded only after the last byte, all
    under the part's lock (``uploads.lock_part``): whatever stops a PUT midway, a recorded digest
    always describes the bytes on disk, which the blob key relies on.
    """
    state = app_state(request)
    settings = state.settings
    transfer_urls.verify(settings, PART_KIND, f"{upload_id}/{part_number}", expires, signature)
    upload = await run_in_threadpool(_lookup, state.db, upload_id)
    if upload is None:
        raise NotFound(f"Upload {upload_id} does not exist.", code=8003, field="upload_id")
    uploads.check_part_number(upload, part_number)
    want = uploads.expected_size(upload, part_number)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != want:
        raise BadRequest(
            f"Part {part_number} must be {want} bytes, got {declared}.", code=8014, field="part_number"
        )
    path = uploads.data_path(settings, upload_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        uploads.lock_part(fd, upload, part_number)
        try:
            return await _receive_part(state.db, request, fd, upload, part_number, want)
        except NotFound:
            uploads.remove_parts(settings, upload_id)  # the data file this PUT may have recreated
            raise
        finally:
            uploads.unlock_part(upload, part_number)
    finally:
        os.close(fd)  # also releases the part's lock


async def _receive_part(
    db: Database, request: Request, fd: int, upload: Upload, part_number: int, want: int
) -> Response:
    if not await run_in_threadpool(_store_part, db, upload.id, part_number, want, None):
        raise NotFound(f"Upload {upload.id} was completed or aborted meanwhile.", code=8003)
    sha = hashlib.sha256()
    offset = uploads.part_offset(upload, part_number)
    got = 0
    batch: list[bytes] = []
    batched = 0
    # The hash and the writes run on a worker thread (both release the GIL) while the event loop goes
    # on decrypting and parsing: one batch in flight per request keeps the hash in order.
    pending: Future[int] | None = None
    etag: str | None = None
    try:
        async for chunk in request.stream():
            got += len(chunk)
            if got > want:
                break
            if chunk:
                batch.append(chunk)
                batched += len(chunk)
            if batched >= WRITE_BATCH or len(batch) >= MAX_IOVECS:
                if pending is not None:
                    offset = await asyncio.wrap_future(pending)
                pending = _WRITERS.submit(uploads.write_chunks, fd, sha, batch, offset)
                batch, batched = [], 0
        if pending is not None:
            offset = await asyncio.wrap_future(pending)
            pending = None
        if batch and got <= want:
            offset = await run_in_threadpool(uploads.write_chunks, fd, sha, batch, offset)
        if got == want:
            etag = sha.hexdigest()
    finally:
        if pending is not None:
            wait([pending])  # at most one batch: the descriptor must outlive its write
    if etag is None:
        raise BadRequest(
            f"Part {part_number} must be {want} bytes, got {'more' if got > want else got}.",
            code=8014,
            field="part_number",
        )
    if not await run_in_threadpool(_store_part, db, upload.id, part_number, want, etag):
        raise NotFound(f"Upload {upload.id} was completed or aborted meanwhile.", code=8003)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})
