"""Wire shapes of volumes, volume objects, members, imports and exports."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from bridgehead.db.models import User
from bridgehead.db.models.volumes import IMPORT, Transfer, Volume, VolumeMember
from bridgehead.schemas.common import Wire, fmt_dt
from bridgehead.storage.volumes import ObjectInfo

# Never echoed back: secrets are write-only.
SECRET_KEYS = ("credentials",)


class VolumeCreate(Wire):
    name: Any = None
    description: str | None = None
    access_mode: Any = None
    service: Any = None


class VolumeUpdate(Wire):
    description: str | None = None
    access_mode: Any = None
    service: Any = None
    active: Any = None


class VolumeMemberCreate(Wire):
    username: Any = None
    type: str | None = None
    permissions: Any = None


class BulkItems(Wire):
    items: Any = None


class ImportIds(Wire):
    import_ids: Any = None


class ExportIds(Wire):
    export_ids: Any = None


def volume_href(api: str, volume_id: str) -> str:
    return f"{api}/storage/volumes/{volume_id}"


def volume_out(api: str, volume: Volume) -> dict[str, Any]:
    service = {k: v for k, v in (volume.service or {}).items() if k not in SECRET_KEYS}
    return {
        "href": volume_href(api, volume.sbg_id),
        "id": volume.sbg_id,
        "name": volume.name,
        "description": volume.description or "",
        "access_mode": volume.access_mode,
        "service": service,
        "created_on": fmt_dt(volume.created_on),
        "modified_on": fmt_dt(volume.modified_on),
        "active": bool(volume.active),
    }


def object_out(api: str, volume: Volume, obj: ObjectInfo) -> dict[str, Any]:
    query = urlencode({"location": obj.location}, quote_via=quote)
    return {
        "href": f"{volume_href(api, volume.sbg_id)}/object?{query}",
        "location": obj.location,
        "volume": volume.sbg_id,
        "type": str((volume.service or {}).get("type", "")),
        "metadata": dict(obj.metadata),
    }


def prefix_out(api: str, volume: Volume, prefix: str) -> dict[str, Any]:
    query = urlencode({"prefix": prefix}, quote_via=quote)
    return {
        "href": f"{volume_href(api, volume.sbg_id)}/list?{query}",
        "prefix": prefix,
        "volume": volume.sbg_id,
    }


def member_out(api: str, volume_id: str, member: VolumeMember, user: User) -> dict[str, Any]:
    return {
        "href": f"{volume_href(api, volume_id)}/members/{user.username}",
        "id": user.username,
        "username": user.username,
        "email": user.email,
        "type": "USER",
        "permissions": member.permissions(),
    }


def transfer_out(api: str, row: Transfer, result: dict[str, Any] | None) -> dict[str, Any]:
    """Import or Export JSON; ``result`` is the File JSON of what was created/exported, if any."""
    spec = row.spec or {}
    common: dict[str, Any] = {
        "id": row.id,
        "state": row.state,
        "overwrite": bool(spec.get("overwrite")),
        "started_on": fmt_dt(row.started_on),
        "finished_on": fmt_dt(row.finished_on),
        "result": result,
        "error": row.error,
    }
    if row.kind == IMPORT:
        return {
            "href": f"{api}/storage/imports/{row.id}",
            **common,
            "autorename": bool(spec.get("autorename")),
            "preserve_folder_structure": bool(spec.get("preserve_folder_structure")),
            "source": {"volume": row.volume, "location": row.location},
            "destination": dict(spec.get("destination") or {}),
            "properties": dict(spec.get("properties") or {}),
        }
    return {
        "href": f"{api}/storage/exports/{row.id}",
        **common,
        "source": {"file": spec.get("file")},
        "destination": {"volume": row.volume, "location": row.location},
        "properties": dict(spec.get("properties") or {}),
        "copy_only": bool(spec.get("copy_only", True)),
    }
