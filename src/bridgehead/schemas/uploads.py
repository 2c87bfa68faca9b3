"""Wire shapes of the multipart upload flow."""

from __future__ import annotations

from typing import Any

from bridgehead.db.models.uploads import Upload
from bridgehead.domain.uploads import part_count
from bridgehead.schemas.common import Wire, fmt_dt


class UploadInit(Wire):
    project: str | None = None
    parent: str | None = None
    name: Any = None
    size: Any = None
    part_size: Any = None


class PartReport(Wire):
    part_number: Any = None
    response: dict[str, Any] | None = None


class UploadComplete(Wire):
    parts: Any = None


def upload_out(
    api: str, upload: Upload, project_sbg_id: str, uploaded: int, parts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "href": f"{api}/upload/multipart/{upload.id}",
        "upload_id": upload.id,
        "project": project_sbg_id,
        "parent": upload.parent_id,
        "name": upload.name,
        "size": upload.size,
        "part_size": upload.part_size,
        "parts_count": part_count(upload.size, upload.part_size),
        "initiated": fmt_dt(upload.initiated),
        "parallel_uploads": True,
        "uploaded_parts_count": uploaded,
    }
    if parts is not None:
        out["parts"] = parts
    return out
