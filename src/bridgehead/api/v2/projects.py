"""Projects and members. Project ids are ``owner/slug`` and appear raw in paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from bridgehead.api.deps import CtxDep
from bridgehead.api.pagination import Page, page_params
from bridgehead.domain import projects
from bridgehead.domain.errors import BadRequest
from bridgehead.schemas.common import CollectionOf
from bridgehead.schemas.projects import (
    MemberCreate,
    MemberOut,
    Permissions,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    member_out,
    project_out,
)

router = APIRouter(prefix="/projects", tags=["projects"])

PageDep = Annotated[Page, Depends(page_params)]


def _list(
    ctx: CtxDep,
    page: Page,
    owner: str | None,
    name: list[str] | None,
    tags: list[str] | None,
    category: str | None,
) -> Response:
    with ctx.db.read() as s:
        rows, total = projects.list_projects(
            s,
            ctx.user,
            owner=owner,
            names=name or [],
            tags=tags or [],
            category=category,
            offset=page.offset,
            limit=page.limit,
        )
        perms = projects.permissions_map(s, ctx.user, rows)
        items = [project_out(ctx.api, p, perms[p.id]) for p in rows]
    return ctx.page(items, total, page)


@router.get("", response_model=CollectionOf[ProjectOut], summary="Projects the caller is a member of")
def list_projects(
    ctx: CtxDep,
    page: PageDep,
    name: Annotated[list[str] | None, Query()] = None,
    tags: Annotated[list[str] | None, Query()] = None,
    category: str | None = None,
) -> Response:
    return _list(ctx, page, None, name, tags, category)


@router.get("/{owner}", response_model=CollectionOf[ProjectOut], summary="Projects owned by one user")
def list_owner_projects(
    owner: str,
    ctx: CtxDep,
    page: PageDep,
    name: Annotated[list[str] | None, Query()] = None,
    tags: Annotated[list[str] | None, Query()] = None,
    category: str | None = None,
) -> Response:
    return _list(ctx, page, owner, name, tags, category)


@router.post("", status_code=201, response_model=ProjectOut, summary="Create a project")
def create_project(ctx: CtxDep, body: ProjectCreate | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing request body: a project needs at least a name.", code=3007, field="name")
    if body.type not in (None, "v2", "v1"):
        raise BadRequest("Project type must be 'v2'.", code=3010, field="type")
    with ctx.db.write() as s:
        p = projects.create_project(
            s,
            ctx.user,
            name=body.name,
            billing_group=body.billing_group,
            description=body.description,
            tags=body.tags,
            settings=body.settings,
        )
        data = project_out(ctx.api, p, projects.access_to(s, ctx.user, p).permissions)
    return ctx.one(data, 201)


@router.get("/{owner}/{slug}", response_model=ProjectOut, summary="One project")
def get_project(owner: str, slug: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        acc = projects.access(s, ctx.user, f"{owner}/{slug}")
        return ctx.one(project_out(ctx.api, acc.project, acc.permissions))


@router.patch("/{owner}/{slug}", response_model=ProjectOut, summary="Edit a project (partial)")
def update_project(owner: str, slug: str, ctx: CtxDep, body: ProjectUpdate | None = None) -> Response:
    changes = body.model_dump(exclude_unset=True) if body else {}
    with ctx.db.write() as s:
        p = projects.update_project(s, ctx.user, f"{owner}/{slug}", changes)
        data = project_out(ctx.api, p, projects.access_to(s, ctx.user, p).permissions)
    return ctx.one(data)


@router.delete("/{owner}/{slug}", status_code=204, summary="Delete a project and everything in it")
def delete_project(owner: str, slug: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        projects.delete_project(s, ctx.user, f"{owner}/{slug}")
    return ctx.no_content()


@router.get("/{owner}/{slug}/members", response_model=CollectionOf[MemberOut], summary="Project members")
def list_members(owner: str, slug: str, ctx: CtxDep, page: PageDep) -> Response:
    pid = f"{owner}/{slug}"
    with ctx.db.read() as s:
        rows, total = projects.list_members(s, ctx.user, pid, page.offset, page.limit)
        items = [member_out(ctx.api, m.project, m) for m in rows]
    return ctx.page(items, total, page)


@router.post("/{owner}/{slug}/members", status_code=201, response_model=MemberOut, summary="Add a member")
def add_member(owner: str, slug: str, ctx: CtxDep, body: MemberCreate | None = None) -> Response:
    body = body or MemberCreate()
    if body.type and body.type.upper() != "USER":
        raise BadRequest(f"Member type {body.type!r} is not supported here; only USER.", field="type")
    perms = body.permissions.model_dump(exclude_none=True, by_alias=True) if body.permissions else None
    with ctx.db.write() as s:
        m = projects.add_member(
            s, ctx.user, f"{owner}/{slug}", username=body.username, email=body.email, permissions=perms
        )
        data = member_out(ctx.api, m.project, m)
    return ctx.one(data, 201)


@router.get("/{owner}/{slug}/members/{username}", response_model=MemberOut, summary="One member")
def get_member(owner: str, slug: str, username: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        m = projects.get_member(s, ctx.user, f"{owner}/{slug}", username)
        return ctx.one(member_out(ctx.api, m.project, m))


@router.patch("/{owner}/{slug}/members/{username}/permissions", summary="Change a member's permissions")
def update_member(
    owner: str, slug: str, username: str, ctx: CtxDep, body: Permissions | None = None
) -> Response:
    perms = body.model_dump(exclude_none=True, by_alias=True) if body else {}
    with ctx.db.write() as s:
        m = projects.update_member(s, ctx.user, f"{owner}/{slug}", username, perms)
        data = m.permissions()
    return ctx.raw(data)


@router.delete("/{owner}/{slug}/members/{username}", status_code=204, summary="Remove a member")
def remove_member(owner: str, slug: str, username: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        projects.remove_member(s, ctx.user, f"{owner}/{slug}", username)
    return ctx.no_content()
