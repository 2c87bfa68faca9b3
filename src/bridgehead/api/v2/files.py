"""Files and folders: listing, details, edits, metadata, tags, copy, move, delete and downloads."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import ORJSONResponse, StreamingResponse

from bridgehead.api.deps import CtxDep, app_state
from bridgehead.api.pagination import Page, page_params
from bridgehead.api.urls import with_query
from bridgehead.db.models import File
from bridgehead.domain import files, transfer_urls
from bridgehead.domain.errors import BadRequest, NotFound, SbgError
from bridgehead.schemas.files import CopyBody, FileUpdate, FolderCreate, MoveBody, file_out, listed_out
from bridgehead.storage.blobs import store_for

router = APIRouter(tags=["files"])

PageDep = Annotated[Page, Depends(page_params)]
DOWNLOAD_KIND = "download"
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _filter_from(request: Request) -> files.FileFilter:
    """``name``/``tag`` repeat (OR); ``metadata.<key>=<value>`` repeats per key (OR within, AND across)."""
    flt = files.FileFilter()
    for key, value in request.query_params.multi_items():
        if key == "name":
            flt.names.append(value)  # the client sends ``name=`` for an empty list: nothing matches
        elif key in ("tag", "tags") and value:
            flt.tags.append(value)
        elif key == "origin.task":
            flt.origin_task = value
        elif key.startswith("metadata.") and len(key) > len("metadata."):
            flt.metadata.setdefault(key[len("metadata.") :], []).append(value)
        elif key in ("dataset", "origin.dataset"):
            raise BadRequest("Datasets are not supported by this server.", field=key)
    return flt


@router.get("/files", summary="Files in a project's root or in a folder")
def list_files(
    request: Request,
    ctx: CtxDep,
    page: PageDep,
    project: str | None = None,
    parent: str | None = None,
) -> Response:
    flt = _filter_from(request)
    with ctx.db.read() as s:
        where, acc = files.listing_folder(s, ctx.user, project, parent)
        rows, total = files.list_children(s, where, flt, page.offset, page.limit)
        items = [listed_out(ctx.api, f, acc.project.sbg_id) for f in rows]
    return ctx.page(items, total, page)


def _decode_token(token: str | None) -> str | None:
    """Continuation tokens carry the last name served (base64url); ``init`` or nothing starts over."""
    if not token or token == "init":
        return None
    try:
        return base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid continuation token.", field="token")


def _scroll(
    ctx: CtxDep, request: Request, where: str, project_id: str, token: str | None, limit: int
) -> Response:
    flt = _filter_from(request)
    if flt.metadata:
        raise BadRequest("Metadata filters cannot be combined with a continuation token.", field="metadata")
    with ctx.db.read() as s:
        rows, total = files.list_children(s, where, flt, 0, limit, after=_decode_token(token))
        items = [listed_out(ctx.api, f, project_id) for f in rows]
    path = ctx.api + request.url.path.removeprefix("/v2")
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    links = []
    if len(rows) == limit:
        nxt = base64.urlsafe_b64encode(rows[-1].name.encode()).decode().rstrip("=")
        links.append({"href": with_query(path, [*params, ("token", nxt)]), "rel": "next", "method": "GET"})
    here = with_query(path, list(request.query_params.multi_items()))
    body = {"href": here, "items": [ctx.fields.apply(i) for i in items], "links": links}
    return ORJSONResponse(body, headers={"X-Total-Matching-Query": str(total)})


@router.get("/files/scroll", summary="Files of a project or folder, paged by continuation token")
def scroll_files(
    request: Request,
    ctx: CtxDep,
    page: PageDep,
    project: str | None = None,
    parent: str | None = None,
    token: str | None = None,
) -> Response:
    with ctx.db.read() as s:
        where, acc = files.listing_folder(s, ctx.user, project, parent)
    return _scroll(ctx, request, where, acc.project.sbg_id, token, page.limit)


@router.post("/files", status_code=201, summary="Create a folder")
def create_folder(ctx: CtxDep, body: FolderCreate | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing request body: name, type 'folder' and project or parent.", field="name")
    if not isinstance(body.type, str) or body.type.lower() != "folder":
        raise BadRequest(
            "Only folders can be created here: 'type' must be 'folder'.", code=5012, field="type"
        )
    name = files.check_name(body.name)
    if name.startswith("__"):
        raise BadRequest("Folder names must not start with '__'.", code=5024, field="name")
    with ctx.db.write() as s:
        dest, acc = files.destination(s, ctx.user, body.project, body.parent)
        created = files.make_folder(s, project=acc.project, parent=dest, name=name)
        data = file_out(ctx.api, created, acc.project.sbg_id)
    return ctx.one(data, 201)


@router.get("/files/{file_id}", summary="One file or folder")
def get_file(file_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        found, acc = files.get(s, ctx.user, file_id)
        return ctx.one(file_out(ctx.api, found, acc.project.sbg_id))


@router.patch("/files/{file_id}", summary="Rename; metadata (merged) and tags may ride along")
def update_file(file_id: str, ctx: CtxDep, body: FileUpdate | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing request body: nothing to change.", field="name")
    with ctx.db.write() as s:
        found, acc = files.get(s, ctx.user, file_id, "write")
        files.edit(
            s, found, name=body.name, metadata=body.metadata, tags=body.tags, fields_set=body.model_fields_set
        )
        data = file_out(ctx.api, found, acc.project.sbg_id)
    return ctx.one(data)


@router.delete("/files/{file_id}", status_code=204, summary="Delete a file or an empty folder")
def delete_file(file_id: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        found, _ = files.get(s, ctx.user, file_id, "write")
        key = files.delete_file(s, found)
    with ctx.db.write() as s:
        files.collect_blobs(s, store_for(ctx.settings), [key])
    return ctx.no_content()


@router.get("/files/{file_id}/list", summary="A folder's direct children")
def list_folder(file_id: str, request: Request, ctx: CtxDep, page: PageDep) -> Response:
    flt = _filter_from(request)
    with ctx.db.read() as s:
        where, acc = files.folder(s, ctx.user, file_id, "read", "id")
        rows, total = files.list_children(s, where.id, flt, page.offset, page.limit)
        items = [listed_out(ctx.api, f, acc.project.sbg_id) for f in rows]
    return ctx.page(items, total, page)


@router.get("/files/{file_id}/scroll", summary="A folder's children, paged by continuation token")
def scroll_folder(
    file_id: str, request: Request, ctx: CtxDep, page: PageDep, token: str | None = None
) -> Response:
    with ctx.db.read() as s:
        where, acc = files.folder(s, ctx.user, file_id, "read", "id")
    return _scroll(ctx, request, where.id, acc.project.sbg_id, token, page.limit)


@router.get("/files/{file_id}/metadata", summary="A file's metadata")
def get_metadata(file_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        found, _ = files.get(s, ctx.user, file_id)
        return ctx.raw(dict(found.metadata_ or {}))


def _set_metadata(ctx: CtxDep, file_id: str, body: Any, merge: bool) -> Response:
    with ctx.db.write() as s:
        found, _ = files.get(s, ctx.user, file_id, "write")
        files.edit(s, found, metadata=body if body is not None else {}, merge=merge, fields_set={"metadata"})
        data = dict(found.metadata_ or {})
    return ctx.raw(data)


@router.patch("/files/{file_id}/metadata", summary="Merge metadata (null removes a key)")
def patch_metadata(file_id: str, ctx: CtxDep, body: Annotated[Any, Body()] = None) -> Response:
    return _set_metadata(ctx, file_id, body, merge=True)


@router.put("/files/{file_id}/metadata", summary="Replace metadata")
def put_metadata(file_id: str, ctx: CtxDep, body: Annotated[Any, Body()] = None) -> Response:
    return _set_metadata(ctx, file_id, body, merge=False)


@router.put("/files/{file_id}/tags", summary="Replace tags")
def put_tags(file_id: str, ctx: CtxDep, body: Annotated[Any, Body()] = None) -> Response:
    with ctx.db.write() as s:
        found, _ = files.get(s, ctx.user, file_id, "write")
        files.edit(s, found, tags=body if body is not None else [], merge=False, fields_set={"tags"})
        data = list(found.tags or [])
    return ctx.raw(data)


@router.post("/files/{file_id}/actions/copy", summary="Copy a file to a project root or a folder")
def copy_file(file_id: str, ctx: CtxDep, body: CopyBody | None = None) -> Response:
    body = body or CopyBody()
    with ctx.db.write() as s:
        source, _ = files.get(s, ctx.user, file_id, "copy")
        dest, acc = files.destination(s, ctx.user, body.project, body.parent)
        created = files.copy_file(s, source, acc.project, dest, body.name)
        data = file_out(ctx.api, created, acc.project.sbg_id)
    return ctx.one(data)


@router.post("/files/{file_id}/actions/move", summary="Move a file or folder (its id is kept)")
def move_file(file_id: str, ctx: CtxDep, body: MoveBody | None = None) -> Response:
    body = body or MoveBody()
    if not body.parent:
        raise BadRequest("'parent' (the destination folder id) is required.", code=5029, field="parent")
    with ctx.db.write() as s:
        target, _ = files.get(s, ctx.user, file_id, "write")
        dest, acc = files.destination(s, ctx.user, None, body.parent)
        moved = files.move_file(s, target, acc.project, dest, body.name)
        data = file_out(ctx.api, moved, acc.project.sbg_id)
    return ctx.one(data)


@router.get("/files/{file_id}/download_info", summary="A signed, expiring download URL")
def download_info(file_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        found, _ = files.get(s, ctx.user, file_id, "copy")
        if found.is_folder:
            raise BadRequest("Folders cannot be downloaded.", code=5017, field="id")
    expires, sig = transfer_urls.sign(ctx.settings, DOWNLOAD_KIND, file_id)
    return ctx.raw({"url": f"{ctx.api}/transfer/files/{file_id}?expires={expires}&signature={sig}"})


# --- the signed download: no auth headers, the URL is the permission -------------------------------


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``bytes=`` range, clamped to the file; None = whole file."""
    if not header:
        return None
    match = RANGE_RE.match(header.strip())
    if match is None:
        return None  # unknown units or several ranges: answer with the whole body, as RFC 9110 allows
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> SbgError:
    err = SbgError(f"Requested range not satisfiable: the file has {size} bytes.", status=416, code=90000)
    err.headers = {"Content-Range": f"bytes */{size}"}
    return err


def _empty() -> Iterator[bytes]:
    yield b""


@router.get("/transfer/files/{file_id}", include_in_schema=False)
def download(
    file_id: str,
    request: Request,
    expires: Annotated[str | None, Query()] = None,
    signature: Annotated[str | None, Query()] = None,
) -> Response:
    """Stream a file's bytes with an exact ``Content-Length`` (never chunked) and ``Range`` support."""
    state = app_state(request)
    transfer_urls.verify(state.settings, DOWNLOAD_KIND, file_id, expires, signature)
    with state.db.read() as s:
        found: File | None = files.find(s, file_id)
        if found is None or found.is_folder:
            raise NotFound(f"File {file_id} does not exist.", code=5002, field="id")
        key, size, name = found.blob_key, int(found.size or 0), found.name
    store = store_for(state.settings)
    if size and (key is None or not store.exists(key)):
        raise NotFound(f"The content of file {file_id} is not stored on this server.", code=5002, field="id")
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
    }
    span = _range(request.headers.get("range"), size)
    if span is None:
        start, end, status = 0, size - 1, 200
    else:
        start, end, status = span[0], span[1], 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    body = store.iter_range(key, start, end) if size and key else _empty()
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")
