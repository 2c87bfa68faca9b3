"""Billing groups: every user owns a default one; projects reference one by UUID."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridgehead.db.models import BillingGroup, Member, Project, User
from bridgehead.domain.errors import BadRequest, Forbidden, NotFound


def _visible(user: User):  # type: ignore[no-untyped-def]
    """Groups a user may see: their own, and those of projects they belong to."""
    member_groups = (
        select(Project.billing_group_id)
        .join(Member, Member.project_id == Project.id)
        .where(Member.user_id == user.id)
    )
    return (BillingGroup.owner_id == user.id) | BillingGroup.id.in_(member_groups)


def list_groups(session: Session, user: User, offset: int, limit: int) -> tuple[list[BillingGroup], int]:
    cond = _visible(user)
    total = session.scalar(select(func.count()).select_from(BillingGroup).where(cond)) or 0
    rows = session.scalars(
        select(BillingGroup)
        .where(cond)
        .order_by(BillingGroup.created_on, BillingGroup.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


def check_uuid(value: str, field: str = "billing_group") -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise BadRequest(f"Billing group id {value!r} is not a valid UUID.", code=4005, field=field)


def get_group(session: Session, user: User, group_id: str) -> BillingGroup:
    group = session.get(BillingGroup, check_uuid(group_id, "id"))
    if group is None:
        raise NotFound("Billing group not found.", code=4002)
    if group.owner_id != user.id and not user.is_admin:
        visible = session.scalar(select(BillingGroup.id).where(BillingGroup.id == group.id, _visible(user)))
        if visible is None:
            raise Forbidden("Insufficient privileges to access the requested billing group.", code=4001)
    return group


def usable_group(session: Session, user: User, group_id: str) -> BillingGroup:
    """A group the user may charge a project to: one they own (or any, for an admin)."""
    group = session.get(BillingGroup, check_uuid(group_id))
    if group is None:
        raise NotFound(f"Billing group {group_id} not found.", code=4002, field="billing_group")
    if group.owner_id != user.id and not user.is_admin:
        raise Forbidden("You are not a member of this billing group.", code=4006, field="billing_group")
    return group
