"""Billing groups: read-only, one default per user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from bridgehead.api.deps import CtxDep
from bridgehead.api.pagination import Page, page_params
from bridgehead.domain import billing
from bridgehead.schemas.common import CollectionOf
from bridgehead.schemas.users import BillingGroupOut, billing_group_out

router = APIRouter(prefix="/billing", tags=["billing"])


@router.get(
    "/groups",
    response_model=CollectionOf[BillingGroupOut],
    summary="Billing groups the caller can use or see",
)
def list_groups(ctx: CtxDep, page: Annotated[Page, Depends(page_params)]) -> Response:
    with ctx.db.read() as s:
        rows, total = billing.list_groups(s, ctx.user, page.offset, page.limit)
        items = [billing_group_out(ctx.api, g) for g in rows]
    return ctx.page(items, total, page)


@router.get("/groups/{group_id}", response_model=BillingGroupOut, summary="One billing group")
def get_group(group_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        return ctx.one(billing_group_out(ctx.api, billing.get_group(s, ctx.user, group_id)))
