"""Wire shapes of apps: the App object and the copy body."""

from __future__ import annotations

from typing import Any

from bridgehead.db.models.apps import App, AppRevision
from bridgehead.schemas.common import Wire


class AppCopy(Wire):
    project: str | None = None
    name: str | None = None
    strategy: str | None = None


def raw_out(app: App, rev: AppRevision) -> dict[str, Any]:
    """The stored CWL; ``sbg:latestRevision`` always reflects the app now, not when it was stored."""
    raw = dict(rev.raw)
    raw["sbg:latestRevision"] = app.latest_revision
    return raw


def app_out(api: str, app: App, rev: AppRevision | None, revision: int | None = None) -> dict[str, Any]:
    """The App object; ``rev`` None leaves out ``raw`` (list items: the client fetches it via href)."""
    number = rev.revision if rev is not None else (app.latest_revision if revision is None else revision)
    full_id = f"{app.sbg_id}/{number}"
    out: dict[str, Any] = {
        "href": f"{api}/apps/{full_id}",
        "id": full_id,
        "project": app.sbg_id.rsplit("/", 1)[0],
        "name": app.name,
        "revision": number,
        "latest_revision": app.latest_revision,
        "copy_of": app.copy_of,
    }
    if rev is not None:
        out["raw"] = raw_out(app, rev)
    return out
