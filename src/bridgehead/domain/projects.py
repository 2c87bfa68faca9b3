"""Projects and their members. Every project-scoped action goes through ``access``."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from bridgehead.db.base import utcnow
from bridgehead.db.models import File, Member, Project, User
from bridgehead.db.models.files import FOLDER
from bridgehead.domain import billing
from bridgehead.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from bridgehead.domain.users import default_billing_group, get_by_username

MAX_NAME = 255
PERMISSIONS = Member.PERMISSIONS


@dataclass(frozen=True)
class Access:
    """A project as seen by one caller, with the caller's permissions on it."""

    project: Project
    permissions: dict[str, bool]

    def can(self, permission: str) -> bool:
        return self.permissions.get(permission, False)


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:200] or "project"


def parse_project_id(project_id: str, field: str = "project") -> tuple[str, str]:
    parts = project_id.split("/") if isinstance(project_id, str) else []
    if len(parts) != 2 or not all(parts):
        raise BadRequest(
            f"Malformed project id {project_id!r}; expected 'owner/project'.", code=3012, field=field
        )
    return parts[0], parts[1]


# Built once (every project-scoped request runs it): statement construction is most of its cost.
PROJECT_BY_SLUG = select(Project).where(
    Project.owner == bindparam("owner"), Project.slug == bindparam("slug")
)


def find_project(session: Session, project_id: str, field: str = "project") -> Project | None:
    owner, slug = parse_project_id(project_id, field)
    return session.scalar(PROJECT_BY_SLUG, {"owner": owner, "slug": slug})


def access(
    session: Session, user: User, project_id: str, permission: str = "read", field: str = "project"
) -> Access:
    """Load a project the caller can see and check one permission (404 if missing, 403 if not allowed)."""
    project = find_project(session, project_id, field)
    if project is None:
        raise NotFound(f"Project {project_id} does not exist.", code=3002, field=field)
    return access_to(session, user, project, permission)


def access_to(session: Session, user: User, project: Project, permission: str = "read") -> Access:
    if user.is_admin:
        perms = dict.fromkeys(PERMISSIONS, True)
    else:
        member = session.scalar(
            select(Member).where(Member.project_id == project.id, Member.user_id == user.id)
        )
        if member is None:
            raise Forbidden(f"You are not a member of project {project.sbg_id}.", code=3001)
        perms = member.permissions()
    if not perms.get(permission, False):
        raise Forbidden(
            f"Insufficient privileges: '{permission}' permission on project {project.sbg_id} is required.",
            code=3001,
        )
    return Access(project, perms)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("Project name must not be empty.", code=3007, field="name")
    if len(name) > MAX_NAME:
        raise BadRequest(f"Project name is longer than {MAX_NAME} characters.", code=3007, field="name")
    if any(ch < " " for ch in name):
        raise BadRequest("Project name must not contain control characters.", code=3007, field="name")
    return name


def _check_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRequest("Project tags must be a list of strings.", field="tags")
    return list(tags)


def create_project(
    session: Session,
    user: User,
    *,
    name: str,
    billing_group: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Project:
    name = _check_name(name)
    group = (
        billing.usable_group(session, user, billing_group)
        if billing_group
        else default_billing_group(session, user)
    )
    base = slugify(name)
    taken = set(
        session.scalars(
            select(Project.slug).where(
                Project.owner == user.username, or_(Project.slug == base, Project.slug.like(f"{base}-%"))
            )
        )
    )
    slug, n = base, 0
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    now = utcnow()
    project = Project(
        owner=user.username,
        slug=slug,
        name=name,
        description=description,
        tags=_check_tags(tags or []),
        settings=dict(settings or {}),
        billing_group_id=group.id,
        root_folder="",
        created_by=user.username,
        created_on=now,
        modified_on=now,
    )
    session.add(project)
    session.flush()
    root = File(
        project_id=project.id, parent_id=None, name=slug, type=FOLDER, created_on=now, modified_on=now
    )
    session.add(root)
    session.flush()
    project.root_folder = root.id
    session.add(
        Member(
            project_id=project.id, user_id=user.id, read=True, copy=True, write=True, execute=True, admin=True
        )
    )
    session.flush()
    return project


def list_projects(
    session: Session,
    user: User,
    *,
    owner: str | None,
    names: list[str],
    tags: list[str],
    category: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Project], int]:
    query = select(Project)
    if not user.is_admin:
        query = query.where(Project.id.in_(select(Member.project_id).where(Member.user_id == user.id)))
    if owner is not None:
        query = query.where(Project.owner == owner)
    if names:
        query = query.where(or_(*[Project.name.contains(n, autoescape=True) for n in names]))
    if category:
        query = query.where(Project.category == category.upper())
    query = query.order_by(Project.created_on, Project.id)
    if tags:  # JSON list containment differs per database; filter in Python
        rows = [p for p in session.scalars(query) if any(t in (p.tags or []) for t in tags)]
        return rows[offset : offset + limit], len(rows)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    return list(session.scalars(query.offset(offset).limit(limit))), total


def permissions_map(session: Session, user: User, projects: list[Project]) -> dict[int, dict[str, bool]]:
    """The caller's permissions on many projects in one query (listing without N+1 member lookups)."""
    if user.is_admin:
        return {p.id: dict.fromkeys(PERMISSIONS, True) for p in projects}
    ids = [p.id for p in projects]
    if not ids:
        return {}
    members = session.scalars(select(Member).where(Member.user_id == user.id, Member.project_id.in_(ids)))
    return {m.project_id: m.permissions() for m in members}


def update_project(session: Session, user: User, project_id: str, changes: dict[str, Any]) -> Project:
    project = access(session, user, project_id, "admin" if "billing_group" in changes else "write").project
    if "name" in changes:
        project.name = _check_name(changes["name"])
    if "description" in changes:
        project.description = changes["description"]
    if "tags" in changes:
        project.tags = _check_tags(changes["tags"])
    if "settings" in changes and changes["settings"] is not None:
        if not isinstance(changes["settings"], dict):
            raise BadRequest("Project settings must be an object.", field="settings")
        project.settings = {**(project.settings or {}), **changes["settings"]}
    if changes.get("billing_group"):
        project.billing_group_id = billing.usable_group(session, user, changes["billing_group"]).id
    if changes.get("category"):
        project.category = str(changes["category"]).upper()
    project.modified_on = utcnow()
    session.flush()
    return project


def delete_project(session: Session, user: User, project_id: str) -> None:
    project = access(session, user, project_id, "admin").project
    session.delete(project)
    session.flush()


def set_public(session: Session, project: Project, public: bool) -> None:
    project.public = public
    session.flush()


# --- members ---------------------------------------------------------------------------------


def list_members(
    session: Session, user: User, project_id: str, offset: int, limit: int
) -> tuple[list[Member], int]:
    project = access(session, user, project_id).project
    cond = Member.project_id == project.id
    total = session.scalar(select(func.count(Member.id)).where(cond)) or 0
    rows = session.scalars(select(Member).where(cond).order_by(Member.id).offset(offset).limit(limit))
    return list(rows), total


def check_permissions(
    value: Any, allowed: tuple[str, ...], code: int, ignored: tuple[str, ...] = ()
) -> dict[str, bool]:
    """A member permissions object: known keys with strict booleans (``"yes"`` never grants anything).

    Shared by project and volume members; ``ignored`` keys are dropped silently (volumes have no
    ``execute``, but clients may still send it).
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("Member permissions must be an object.", code=code, field="permissions")
    out: dict[str, bool] = {}
    for key, flag in value.items():
        if key in ignored:
            continue
        if key not in allowed:
            raise BadRequest(
                f"Unknown permission {key!r}; allowed: {', '.join(allowed)}.",
                code=code,
                field=f"permissions.{key}",
            )
        if not isinstance(flag, bool):
            raise BadRequest(
                f"Permission {key!r} must be true or false.", code=code, field=f"permissions.{key}"
            )
        out[key] = flag
    return out


def _permissions(value: Any) -> dict[str, bool]:
    return check_permissions(value, PERMISSIONS, 3013)


def add_member(
    session: Session,
    user: User,
    project_id: str,
    *,
    username: str | None,
    email: str | None,
    permissions: Any,
) -> Member:
    project = access(session, user, project_id, "admin").project
    perms = _permissions(permissions)
    if username:
        target = get_by_username(session, username)
    elif email:
        target_user = session.scalar(select(User).where(User.email == email))
        if target_user is None:
            raise NotFound(f"No user has the email {email!r}.", code=2002, field="email")
        target = target_user
    else:
        raise BadRequest("Member username must not be empty.", code=3005, field="username")
    if session.scalar(select(Member.id).where(Member.project_id == project.id, Member.user_id == target.id)):
        raise Conflict(f"User {target.username} is already a member of {project.sbg_id}.", code=3003)
    member = Member(project_id=project.id, user_id=target.id, read=True)
    for key, flag in perms.items():
        setattr(member, key, flag)
    member.read = True  # read is always granted
    session.add(member)
    session.flush()
    return member


def get_member(session: Session, user: User, project_id: str, username: str) -> Member:
    project = access(session, user, project_id).project
    member = session.scalar(
        select(Member)
        .join(User, Member.user_id == User.id)
        .where(Member.project_id == project.id, User.username == username)
    )
    if member is None:
        raise NotFound(f"User {username} is not a member of {project.sbg_id}.", code=3002)
    return member


def update_member(session: Session, user: User, project_id: str, username: str, permissions: Any) -> Member:
    access(session, user, project_id, "admin")
    member = get_member(session, user, project_id, username)
    for key, flag in _permissions(permissions).items():
        setattr(member, key, flag)
    member.read = True
    session.flush()
    return member


def remove_member(session: Session, user: User, project_id: str, username: str) -> None:
    access(session, user, project_id, "admin")
    member = get_member(session, user, project_id, username)
    if member.admin:
        admins = session.scalar(
            select(func.count(Member.id)).where(
                Member.project_id == member.project_id, Member.admin.is_(True)
            )
        )
        if (admins or 0) <= 1:
            raise BadRequest("Cannot remove the last admin of a project.", code=3011)
    session.delete(member)
    session.flush()
