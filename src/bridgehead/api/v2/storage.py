"""Volumes (``/storage/volumes``), imports, exports and their ``/bulk/storage/...`` forms.

Anything that touches external storage (reachability checks, listing) runs outside database
transactions; imports and exports only queue a row here and the transfer worker does the copying.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from bridgehead.api.deps import Ctx, CtxDep
from bridgehead.api.pagination import Page, page_params
from bridgehead.api.urls import with_query
from bridgehead.db.models.volumes import EXPORT, IMPORT, Transfer
from bridgehead.domain import transfers, volumes
from bridgehead.domain.errors import BadRequest, NotFound, SbgError
from bridgehead.schemas.files import file_out
from bridgehead.schemas.volumes import (
    BulkItems,
    ExportIds,
    ImportIds,
    VolumeCreate,
    VolumeMemberCreate,
    VolumeUpdate,
    member_out,
    object_out,
    prefix_out,
    transfer_out,
    volume_out,
)
from bridgehead.storage.volumes import VolumeError, backend_for

router = APIRouter(tags=["storage"])

PageDep = Annotated[Page, Depends(page_params)]
MAX_BULK = 100
MAX_LIST = 1000


# --- volumes ---------------------------------------------------------------------------------


@router.post("/storage/volumes", status_code=201, summary="Create a volume (s3 or local directory)")
def create_volume(ctx: CtxDep, body: VolumeCreate | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing request body: a volume needs name, service and access_mode.", field="name")
    volumes.check_name(body.name)
    volumes.check_access_mode(body.access_mode)
    service = volumes.prepare_service(ctx.settings, body.service)
    with ctx.db.write() as s:
        vol = volumes.create_volume(
            s,
            ctx.user,
            name=body.name,
            service=service,
            access_mode=body.access_mode,
            description=body.description,
        )
        data = volume_out(ctx.api, vol)
    return ctx.one(data, 201)


@router.get("/storage/volumes", summary="Volumes the caller owns or is a member of")
def list_volumes(ctx: CtxDep, page: PageDep) -> Response:
    with ctx.db.read() as s:
        rows, total = volumes.list_volumes(s, ctx.user, page.offset, page.limit)
        items = [volume_out(ctx.api, v) for v in rows]
    return ctx.page(items, total, page)


@router.get("/storage/volumes/{owner}/{name}", summary="One volume")
def get_volume(owner: str, name: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        return ctx.one(volume_out(ctx.api, volumes.access(s, ctx.user, f"{owner}/{name}").volume))


@router.patch("/storage/volumes/{owner}/{name}", summary="Edit a volume (partial)")
def update_volume(owner: str, name: str, ctx: CtxDep, body: VolumeUpdate | None = None) -> Response:
    vid = f"{owner}/{name}"
    changes = body.model_dump(exclude_unset=True) if body else {}
    service = None
    if changes.get("service") is not None:
        with ctx.db.read() as s:
            current = volumes.access(s, ctx.user, vid, "admin").volume
            s.expunge(current)
        service = volumes.prepare_service_update(ctx.settings, current, changes["service"])
    with ctx.db.write() as s:
        vol = volumes.update_volume(s, ctx.user, vid, changes, service)
        data = volume_out(ctx.api, vol)
    return ctx.one(data)


@router.delete("/storage/volumes/{owner}/{name}", status_code=204, summary="Delete a volume")
def delete_volume(owner: str, name: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        volumes.delete_volume(s, ctx.user, f"{owner}/{name}")
    return ctx.no_content()


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return 50
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"Invalid value for 'limit': {value!r} is not an integer.", field="limit") from None
    if not 1 <= limit <= MAX_LIST:
        raise BadRequest(f"Invalid value for 'limit': it must be between 1 and {MAX_LIST}.", field="limit")
    return limit


@router.get("/storage/volumes/{owner}/{name}/list", summary="Browse a volume (objects and prefixes)")
def list_objects(
    owner: str,
    name: str,
    ctx: CtxDep,
    prefix: str = "",
    limit: str | None = None,
    continuation_token: str | None = None,
) -> Response:
    count = _limit(limit)
    if ".." in prefix.split("/"):
        raise BadRequest("Invalid value for 'prefix': '..' is not allowed.", field="prefix")
    with ctx.db.read() as s:
        vol = volumes.access(s, ctx.user, f"{owner}/{name}").volume
        s.expunge(vol)
    try:
        listing = backend_for(vol.service).list(prefix.lstrip("/"), count, continuation_token or None)
    except VolumeError as exc:
        raise BadRequest(
            exc.message, code=9103, field="continuation_token" if continuation_token else "prefix"
        )
    path = ctx.api + ctx.request.url.path.removeprefix("/v2").rstrip("/")
    params = [(k, v) for k, v in ctx.request.query_params.multi_items() if k != "continuation_token"]
    links = []
    if listing.next_token:
        links.append({"next": with_query(path, [*params, ("continuation_token", listing.next_token)])})
    body = {
        "href": with_query(path, list(ctx.request.query_params.multi_items())),
        "items": [ctx.fields.apply(object_out(ctx.api, vol, o)) for o in listing.objects],
        "prefixes": [prefix_out(ctx.api, vol, p) for p in listing.prefixes],
        "links": links,
    }
    return ctx.raw(body)


@router.get("/storage/volumes/{owner}/{name}/object", summary="One object of a volume")
def get_object(owner: str, name: str, ctx: CtxDep, location: str | None = None) -> Response:
    loc = transfers.check_location(location, "location", folder_ok=False)
    with ctx.db.read() as s:
        vol = volumes.access(s, ctx.user, f"{owner}/{name}").volume
        s.expunge(vol)
    backend = backend_for(vol.service)
    try:
        info = backend.stat(loc)
    except VolumeError as exc:
        raise BadRequest(exc.message, code=9103, field="location")
    if info is None:
        raise NotFound(f"Object {backend.describe(loc)} does not exist.", code=9104, field="location")
    return ctx.one(object_out(ctx.api, vol, info))


# --- volume members --------------------------------------------------------------------------


@router.get("/storage/volumes/{owner}/{name}/members", summary="Volume members")
def list_members(owner: str, name: str, ctx: CtxDep, page: PageDep) -> Response:
    vid = f"{owner}/{name}"
    with ctx.db.read() as s:
        rows, total = volumes.list_members(s, ctx.user, vid, page.offset, page.limit)
        items = [member_out(ctx.api, vid, m, u) for m, u in rows]
    return ctx.page(items, total, page)


@router.post("/storage/volumes/{owner}/{name}/members", status_code=201, summary="Add a volume member")
def add_member(owner: str, name: str, ctx: CtxDep, body: VolumeMemberCreate | None = None) -> Response:
    body = body or VolumeMemberCreate()
    if body.type and body.type.upper() != "USER":
        raise BadRequest(f"Member type {body.type!r} is not supported here; only USER.", field="type")
    vid = f"{owner}/{name}"
    with ctx.db.write() as s:
        m, u = volumes.add_member(s, ctx.user, vid, username=body.username, permissions=body.permissions)
        data = member_out(ctx.api, vid, m, u)
    return ctx.one(data, 201)


@router.get("/storage/volumes/{owner}/{name}/members/{username}", summary="One volume member")
def get_member(owner: str, name: str, username: str, ctx: CtxDep) -> Response:
    vid = f"{owner}/{name}"
    with ctx.db.read() as s:
        m, u = volumes.get_member(s, ctx.user, vid, username)
        return ctx.one(member_out(ctx.api, vid, m, u))


@router.get("/storage/volumes/{owner}/{name}/members/{username}/permissions", summary="Member permissions")
def get_member_permissions(owner: str, name: str, username: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        m, _ = volumes.get_member(s, ctx.user, f"{owner}/{name}", username)
        return ctx.raw(m.permissions())


@router.patch(
    "/storage/volumes/{owner}/{name}/members/{username}/permissions", summary="Change member permissions"
)
def update_member(
    owner: str, name: str, username: str, ctx: CtxDep, body: dict[str, Any] | None = None
) -> Response:
    with ctx.db.write() as s:
        m = volumes.update_member(s, ctx.user, f"{owner}/{name}", username, body or {})
        data = m.permissions()
    return ctx.raw(data)


@router.delete(
    "/storage/volumes/{owner}/{name}/members/{username}", status_code=204, summary="Remove a member"
)
def remove_member(owner: str, name: str, username: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        volumes.remove_member(s, ctx.user, f"{owner}/{name}", username)
    return ctx.no_content()


# --- imports and exports ---------------------------------------------------------------------


def _out(ctx: Ctx, s: Session, row: Transfer) -> dict[str, Any]:
    found = transfers.result_file(s, row)
    result = file_out(ctx.api, found[0], found[1].sbg_id) if found is not None else None
    return transfer_out(ctx.api, row, result)


def _copy_only(value: str | None) -> bool:
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise BadRequest(f"Invalid value for 'copy_only': {value!r} is not true or false.", field="copy_only")
    return lowered in ("true", "1")


def _list(
    ctx: Ctx, kind: str, page: Page, volume: str | None, project: str | None, state: str | None
) -> Response:
    with ctx.db.read() as s:
        rows, total = transfers.query(
            s,
            ctx.user,
            kind,
            volume=volume,
            project=project,
            state=state,
            offset=page.offset,
            limit=page.limit,
        )
        items = [_out(ctx, s, r) for r in rows]
    return ctx.page(items, total, page)


@router.post("/storage/imports", status_code=201, summary="Import a volume object (or folder) into a project")
def create_import(ctx: CtxDep, body: dict[str, Any] | None = None) -> Response:
    with ctx.db.write() as s:
        row = transfers.submit_import(s, ctx.user, body)
        data = _out(ctx, s, row)
    ctx.state.wake("transfers")
    return ctx.one(data, 201)


@router.get("/storage/imports", summary="The caller's imports")
def list_imports(
    ctx: CtxDep,
    page: PageDep,
    volume: str | None = None,
    project: str | None = None,
    state: str | None = None,
) -> Response:
    return _list(ctx, IMPORT, page, volume, project, state)


@router.get("/storage/imports/{import_id}", summary="One import")
def get_import(import_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        return ctx.one(_out(ctx, s, transfers.get(s, ctx.user, IMPORT, import_id)))


@router.post("/storage/exports", status_code=201, summary="Export a project file to a volume")
def create_export(
    ctx: CtxDep,
    body: dict[str, Any] | None = None,
    copy_only: Annotated[str | None, Query()] = None,
) -> Response:
    keep = _copy_only(copy_only)
    with ctx.db.write() as s:
        row = transfers.submit_export(s, ctx.user, body, keep)
        data = _out(ctx, s, row)
    ctx.state.wake("transfers")
    return ctx.one(data, 201)


@router.get("/storage/exports", summary="The caller's exports")
def list_exports(
    ctx: CtxDep,
    page: PageDep,
    volume: str | None = None,
    state: str | None = None,
) -> Response:
    return _list(ctx, EXPORT, page, volume, None, state)


@router.get("/storage/exports/{export_id}", summary="One export")
def get_export(export_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        return ctx.one(_out(ctx, s, transfers.get(s, ctx.user, EXPORT, export_id)))


# --- bulk ------------------------------------------------------------------------------------


def _bulk_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"Missing required field '{field}': a list is expected.", field=field)
    if not value:
        raise BadRequest(f"Field '{field}' must not be empty.", field=field)
    if len(value) > MAX_BULK:
        raise BadRequest(
            f"Field '{field}' has {len(value)} entries; at most {MAX_BULK} are allowed.", field=field
        )
    return value


def _error(exc: SbgError) -> dict[str, Any]:
    return {"error": transfers.error_object(exc.status, exc.code, exc.message)}


def _bulk_create(ctx: Ctx, items: list[Any], kind: str, copy_only: bool) -> Response:
    """Each item commits on its own: one bad item never blocks or undoes the others."""
    out: list[dict[str, Any]] = []
    for item in items:
        try:
            with ctx.db.write() as s:
                if kind == IMPORT:
                    row = transfers.submit_import(s, ctx.user, item)
                else:
                    row = transfers.submit_export(s, ctx.user, item, copy_only)
                out.append({"resource": _out(ctx, s, row)})
        except SbgError as exc:
            out.append(_error(exc))
    ctx.state.wake("transfers")
    return ctx.raw({"items": out})


def _bulk_get(ctx: Ctx, ids: list[Any], kind: str) -> Response:
    out: list[dict[str, Any]] = []
    with ctx.db.read() as s:
        for tid in ids:
            try:
                out.append({"resource": _out(ctx, s, transfers.get(s, ctx.user, kind, tid))})
            except SbgError as exc:
                out.append(_error(exc))
    return ctx.raw({"items": out})


@router.post("/bulk/storage/imports/create", summary="Submit up to 100 imports")
def bulk_create_imports(ctx: CtxDep, body: BulkItems | None = None) -> Response:
    return _bulk_create(ctx, _bulk_list(body.items if body else None, "items"), IMPORT, False)


@router.post("/bulk/storage/imports/get", summary="Get up to 100 imports")
def bulk_get_imports(ctx: CtxDep, body: ImportIds | None = None) -> Response:
    return _bulk_get(ctx, _bulk_list(body.import_ids if body else None, "import_ids"), IMPORT)


@router.post("/bulk/storage/exports/create", summary="Submit up to 100 exports")
def bulk_create_exports(
    ctx: CtxDep, body: BulkItems | None = None, copy_only: Annotated[str | None, Query()] = None
) -> Response:
    keep = _copy_only(copy_only)
    return _bulk_create(ctx, _bulk_list(body.items if body else None, "items"), EXPORT, keep)


@router.post("/bulk/storage/exports/get", summary="Get up to 100 exports")
def bulk_get_exports(ctx: CtxDep, body: ExportIds | None = None) -> Response:
    return _bulk_get(ctx, _bulk_list(body.export_ids if body else None, "export_ids"), EXPORT)
