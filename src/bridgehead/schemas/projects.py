from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from bridgehead.db.models import Member, Project
from bridgehead.schemas.common import SbgDateTime, Wire, fmt_dt


class ProjectCreate(Wire):
    name: str
    billing_group: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    settings: dict[str, Any] | None = None
    type: str | None = None


class ProjectUpdate(Wire):
    name: str | None = None
    billing_group: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    settings: dict[str, Any] | None = None
    category: str | None = None


class Permissions(Wire):
    """Permission flags. Each must be a JSON boolean: "yes" or 1 is rejected, never read as true."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    read: StrictBool | None = None
    copy_: StrictBool | None = Field(default=None, alias="copy")
    write: StrictBool | None = None
    execute: StrictBool | None = None
    admin: StrictBool | None = None


class MemberCreate(Wire):
    username: str | None = None
    email: str | None = None
    type: str | None = None
    permissions: Permissions | None = None


class ProjectOut(BaseModel):
    href: str
    id: str
    name: str
    type: str
    description: str | None
    tags: list[str]
    settings: dict[str, Any]
    billing_group: str
    root_folder: str
    category: str
    created_by: str
    created_on: SbgDateTime
    modified_on: SbgDateTime
    permissions: dict[str, bool]


class MemberOut(BaseModel):
    href: str
    id: str
    username: str
    email: str
    type: str
    permissions: dict[str, bool]


def project_out(api: str, project: Project, permissions: dict[str, bool]) -> dict[str, Any]:
    return {
        "href": f"{api}/projects/{project.sbg_id}",
        "id": project.sbg_id,
        "name": project.name,
        "type": "v2",
        "description": project.description or "",
        "tags": list(project.tags or []),
        "settings": dict(project.settings or {}),
        "billing_group": project.billing_group_id,
        "root_folder": project.root_folder,
        "category": project.category,
        "created_by": project.created_by,
        "created_on": fmt_dt(project.created_on),
        "modified_on": fmt_dt(project.modified_on),
        "permissions": permissions,
    }


def member_out(api: str, project: Project, member: Member) -> dict[str, Any]:
    username = member.user.username
    return {
        "href": f"{api}/projects/{project.sbg_id}/members/{username}",
        "id": username,
        "username": username,
        "email": member.user.email,
        "type": "USER",
        "permissions": member.permissions(),
    }
