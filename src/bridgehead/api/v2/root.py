"""``GET /v2/``, ``/rate_limit``, ``/user``, ``/users/{username}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from bridgehead.api.deps import CtxDep
from bridgehead.api.pagination import Page, page_params
from bridgehead.domain import users
from bridgehead.schemas.common import CollectionOf
from bridgehead.schemas.users import UserOut, user_out

router = APIRouter(tags=["users"])

# Handlers that need no database are ``async def`` (no threadpool hop); the others stay plain ``def``
# because SQLAlchemy sessions are synchronous.

ROOT_RESOURCES = {
    "rate_limit_url": "/rate_limit",
    "user_url": "/user",
    "users_url": "/users",
    "billing_url": "/billing",
    "projects_url": "/projects",
    "files_url": "/files",
    "tasks_url": "/tasks",
    "apps_url": "/apps",
    "action_url": "/action",
    "upload_url": "/upload",
    "storage_url": "/storage",
    "markers_url": "/genome/markers",
}


async def root(ctx: CtxDep) -> Response:
    return ctx.raw({key: ctx.href(path) for key, path in ROOT_RESOURCES.items()})


@router.get("/rate_limit", summary="The caller's rate limit (does not count against it)")
async def rate_limit(ctx: CtxDep) -> Response:
    rate = ctx.state.limiter.peek(ctx.user.id)
    body = {
        "rate": {"limit": rate.limit, "remaining": rate.remaining, "reset": rate.reset},
        "instance_limit": {"limit": -1, "remaining": 9223372036854775807},
    }
    return ctx.raw(body)


@router.get("/user", response_model=UserOut, summary="The caller")
async def me(ctx: CtxDep) -> Response:
    # No database work: the caller was loaded (and cached) by authentication. async avoids a threadpool hop.
    return ctx.one(user_out(ctx.api, ctx.user))


@router.get(
    "/users",
    response_model=CollectionOf[UserOut],
    summary="Users (admins see everyone, others only themselves)",
)
def list_users(ctx: CtxDep, page: Annotated[Page, Depends(page_params)]) -> Response:
    with ctx.db.read() as s:
        rows = users.list_users(s) if ctx.user.is_admin else [users.get_by_username(s, ctx.user.username)]
        items = [user_out(ctx.api, u) for u in rows[page.offset : page.offset + page.limit]]
    return ctx.page(items, len(rows), page)


@router.get("/users/{username}", response_model=UserOut, summary="One user")
def get_user(username: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        return ctx.one(user_out(ctx.api, users.visible_user(s, ctx.user, username)))
