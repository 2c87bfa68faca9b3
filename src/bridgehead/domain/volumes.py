"""Volumes and their members. Every volume-scoped action goes through ``access``.

Service validation (and the reachability check, which may touch the network) happens in
``prepare_service`` *before* a write transaction opens, so a slow bucket never holds a database lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridgehead.config import Settings
from bridgehead.db.base import utcnow
from bridgehead.db.models import User
from bridgehead.db.models.volumes import Volume, VolumeMember
from bridgehead.domain import projects
from bridgehead.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from bridgehead.domain.users import get_by_username
from bridgehead.storage.volumes import VolumeBackend, VolumeError, backend_for

NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
PERMISSIONS = VolumeMember.PERMISSIONS
ACCESS_MODES = ("RO", "RW")
SERVICE_TYPES = ("s3", "local")


@dataclass(frozen=True)
class VolumeAccess:
    volume: Volume
    permissions: dict[str, bool]


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise BadRequest("Volume name must not be empty.", code=9013, field="name")
    if not NAME_RE.match(name):
        raise BadRequest(
            f"Invalid volume name {name!r}: use at most 32 letters, digits or underscores.",
            code=9014,
            field="name",
        )
    return name


def check_access_mode(mode: Any) -> str:
    if mode is None:
        return "RW"
    if not isinstance(mode, str) or mode.upper() not in ACCESS_MODES:
        raise BadRequest(
            f"Invalid access_mode {mode!r}: it must be RO or RW.", code=9015, field="access_mode"
        )
    return mode.upper()


def _text(service: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = service.get(key)
    if value is None or value == "":
        if required:
            raise BadRequest(f"Missing required field 'service.{key}'.", code=9017, field=f"service.{key}")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Field 'service.{key}' must be a string.", code=9017, field=f"service.{key}")
    return value


def allowed_root(settings: Settings, root: str) -> Path:
    """The resolved directory, if it lies under one of ``settings.volume_roots`` (symlinks and ``..``
    resolved on both sides, so neither can be used to step outside)."""
    path = Path(root)
    if not path.is_absolute():
        raise BadRequest(
            f"service.root must be an absolute path, not {root!r}.", code=9017, field="service.root"
        )
    resolved = path.resolve()
    for allowed in settings.volume_roots:
        base = allowed.resolve()
        if resolved == base or resolved.is_relative_to(base):
            return resolved
    allowed_list = ", ".join(str(r) for r in settings.volume_roots) or "none configured"
    raise BadRequest(
        f"service.root {root!r} is not under an allowed volume root ({allowed_list}); "
        "an administrator sets BRIDGEHEAD_VOLUME_ROOTS.",
        code=9017,
        field="service.root",
    )


def normalize_service(settings: Settings, service: Any) -> dict[str, Any]:
    """Validate a create/update ``service`` object and return what is stored (credentials included)."""
    if service is None:
        raise BadRequest("Missing required field 'service'.", code=9016, field="service")
    if not isinstance(service, dict):
        raise BadRequest("Field 'service' must be an object.", code=9017, field="service")
    kind = service.get("type")
    if not isinstance(kind, str) or kind.lower() not in SERVICE_TYPES:
        raise BadRequest(
            f"Unsupported service.type {kind!r}: this server supports 's3' and 'local'.",
            code=9017,
            field="service.type",
        )
    kind = kind.lower()
    prefix = (_text(service, "prefix") or "").strip("/")
    if ".." in prefix.split("/"):
        raise BadRequest("service.prefix must not contain '..'.", code=9017, field="service.prefix")
    out: dict[str, Any] = {"type": kind, "prefix": prefix}
    if kind == "local":
        out["root"] = str(allowed_root(settings, _text(service, "root", required=True) or ""))
        return out
    out["bucket"] = _text(service, "bucket", required=True)
    for key in ("endpoint", "region"):
        value = _text(service, key)
        if value is not None:
            out[key] = value
    creds = service.get("credentials") or {}
    if not isinstance(creds, dict) or not all(isinstance(v, str) for v in creds.values()):
        raise BadRequest(
            "service.credentials must be an object of strings.", code=9017, field="service.credentials"
        )
    if creds and not (creds.get("access_key_id") and creds.get("secret_access_key")):
        raise BadRequest(
            "service.credentials needs access_key_id and secret_access_key.",
            code=9017,
            field="service.credentials",
        )
    out["credentials"] = dict(creds)
    props = service.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise BadRequest("service.properties must be an object.", code=9017, field="service.properties")
        out["properties"] = dict(props)
    return out


def reachable(service: dict[str, Any]) -> VolumeBackend:
    """The backend, after proving it answers (bucket exists / directory exists)."""
    try:
        backend = backend_for(service)
        backend.check()
    except VolumeError as exc:
        raise BadRequest(f"Volume storage is not reachable: {exc.message}", code=9100, field="service")
    return backend


def prepare_service(settings: Settings, service: Any) -> dict[str, Any]:
    normalized = normalize_service(settings, service)
    reachable(normalized)
    return normalized


def parse_volume_id(volume_id: Any, field: str = "volume") -> tuple[str, str]:
    parts = volume_id.split("/") if isinstance(volume_id, str) else []
    if len(parts) != 2 or not all(parts):
        raise BadRequest(f"Malformed volume id {volume_id!r}; expected 'owner/name'.", code=9011, field=field)
    return parts[0], parts[1]


def find(session: Session, volume_id: Any, field: str = "volume") -> Volume | None:
    owner, name = parse_volume_id(volume_id, field)
    return session.scalar(select(Volume).where(Volume.owner == owner, Volume.name == name))


def permissions_of(session: Session, user: User, volume: Volume) -> dict[str, bool] | None:
    if user.is_admin or volume.owner == user.username:
        return dict.fromkeys(PERMISSIONS, True)
    member = session.scalar(
        select(VolumeMember).where(VolumeMember.volume_id == volume.id, VolumeMember.user_id == user.id)
    )
    return member.permissions() if member is not None else None


def access(
    session: Session, user: User, volume_id: Any, permission: str = "read", field: str = "volume"
) -> VolumeAccess:
    """A volume the caller may act on: 404 (9007) when missing, 403 (9020) when not allowed."""
    volume = find(session, volume_id, field)
    if volume is None:
        raise NotFound(f"Volume {volume_id} does not exist.", code=9007, field=field)
    perms = permissions_of(session, user, volume)
    if perms is None:
        raise Forbidden(f"You are not a member of volume {volume.sbg_id}.", code=9020, field=field)
    if not perms.get(permission, False):
        raise Forbidden(
            f"Insufficient privileges: '{permission}' permission on volume {volume.sbg_id} is required.",
            code=9020,
            field=field,
        )
    return VolumeAccess(volume, perms)


def create_volume(
    session: Session,
    user: User,
    *,
    name: Any,
    service: dict[str, Any],
    access_mode: Any = None,
    description: str | None = None,
) -> Volume:
    """``service`` must come from ``prepare_service``."""
    name = check_name(name)
    mode = check_access_mode(access_mode)
    taken = session.scalar(select(Volume.id).where(Volume.owner == user.username, Volume.name == name))
    if taken is not None:
        raise Conflict(f"Volume {user.username}/{name} already exists.", code=9010, field="name")
    now = utcnow()
    volume = Volume(
        owner=user.username,
        name=name,
        description=description,
        access_mode=mode,
        service=service,
        active=True,
        created_on=now,
        modified_on=now,
    )
    session.add(volume)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a concurrent create of the same name won the race
        raise Conflict(f"Volume {user.username}/{name} already exists.", code=9010, field="name") from None
    return volume


def list_volumes(session: Session, user: User, offset: int, limit: int) -> tuple[list[Volume], int]:
    query = select(Volume)
    if not user.is_admin:
        mine = select(VolumeMember.volume_id).where(VolumeMember.user_id == user.id)
        query = query.where(or_(Volume.owner == user.username, Volume.id.in_(mine)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Volume.created_on, Volume.id).offset(offset).limit(limit))
    return list(rows), total


def update_volume(
    session: Session, user: User, volume_id: str, changes: dict[str, Any], service: dict[str, Any] | None
) -> Volume:
    """``service`` (already prepared) replaces the stored one; credentials left out are kept."""
    volume = access(session, user, volume_id, "admin").volume
    if "description" in changes:
        volume.description = changes["description"]
    if changes.get("access_mode") is not None:
        volume.access_mode = check_access_mode(changes["access_mode"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise BadRequest("Field 'active' must be true or false.", field="active")
        volume.active = changes["active"]
    if service is not None:
        if service["type"] == "s3" and not service.get("credentials"):
            service["credentials"] = dict(volume.service.get("credentials") or {})
        volume.service = service
    volume.modified_on = utcnow()
    session.flush()
    return volume


def prepare_service_update(settings: Settings, volume: Volume, patch: Any) -> dict[str, Any]:
    """A PATCH may send a partial service (e.g. new credentials only): overlay it on the stored one,
    refuse a type change, then validate and check reachability like a create."""
    if not isinstance(patch, dict):
        raise BadRequest("Field 'service' must be an object.", code=9017, field="service")
    merged = {**(volume.service or {}), **patch}
    if str(merged.get("type", "")).lower() != volume.service.get("type"):
        raise BadRequest("A volume's service.type cannot change.", code=9017, field="service.type")
    return prepare_service(settings, merged)


def delete_volume(session: Session, user: User, volume_id: str) -> None:
    volume = access(session, user, volume_id, "admin").volume
    session.delete(volume)
    session.flush()


# --- members ---------------------------------------------------------------------------------


def _permissions(value: Any) -> dict[str, bool]:
    return projects.check_permissions(value, PERMISSIONS, 9011, ignored=("execute",))


def list_members(
    session: Session, user: User, volume_id: str, offset: int, limit: int
) -> tuple[list[tuple[VolumeMember, User]], int]:
    volume = access(session, user, volume_id).volume
    cond = VolumeMember.volume_id == volume.id
    total = session.scalar(select(func.count(VolumeMember.id)).where(cond)) or 0
    rows = session.execute(
        select(VolumeMember, User)
        .join(User, VolumeMember.user_id == User.id)
        .where(cond)
        .order_by(VolumeMember.id)
        .offset(offset)
        .limit(limit)
    )
    return [(m, u) for m, u in rows.tuples()], total


def add_member(
    session: Session, user: User, volume_id: str, *, username: Any, permissions: Any
) -> tuple[VolumeMember, User]:
    volume = access(session, user, volume_id, "admin").volume
    perms = _permissions(permissions)
    if not isinstance(username, str) or not username:
        raise BadRequest("Member username must not be empty.", field="username")
    target = get_by_username(session, username)
    if target.username == volume.owner:
        raise Conflict(f"User {username} owns volume {volume.sbg_id}.", code=9010, field="username")
    exists = session.scalar(
        select(VolumeMember.id).where(VolumeMember.volume_id == volume.id, VolumeMember.user_id == target.id)
    )
    if exists is not None:
        raise Conflict(f"User {username} is already a member of volume {volume.sbg_id}.", field="username")
    member = VolumeMember(volume_id=volume.id, user_id=target.id, read=True)
    for key, flag in perms.items():
        setattr(member, key, flag)
    member.read = True
    session.add(member)
    session.flush()
    return member, target


def get_member(session: Session, user: User, volume_id: str, username: str) -> tuple[VolumeMember, User]:
    volume = access(session, user, volume_id).volume
    row = session.execute(
        select(VolumeMember, User)
        .join(User, VolumeMember.user_id == User.id)
        .where(VolumeMember.volume_id == volume.id, User.username == username)
    ).first()
    if row is None:
        raise NotFound(f"User {username} is not a member of volume {volume.sbg_id}.", field="username")
    return row[0], row[1]


def update_member(
    session: Session, user: User, volume_id: str, username: str, permissions: Any
) -> VolumeMember:
    access(session, user, volume_id, "admin")
    member, _ = get_member(session, user, volume_id, username)
    for key, flag in _permissions(permissions).items():
        setattr(member, key, flag)
    member.read = True
    session.flush()
    return member


def remove_member(session: Session, user: User, volume_id: str, username: str) -> None:
    access(session, user, volume_id, "admin")
    member, _ = get_member(session, user, volume_id, username)
    session.delete(member)
    session.flush()
