"""Every v2 router, in the order they are mounted under ``/v2``.

Fixed paths must come before parameterised ones (``/files/scroll`` before ``/files/{id}``);
each module orders its own routes accordingly.
"""

from __future__ import annotations

from fastapi import APIRouter

from bridgehead.api.v2 import (
    actions,
    apps,
    billing,
    bulk,
    bundles,
    files,
    projects,
    root,
    storage,
    tasks,
    uploads,
)

ROUTERS: list[APIRouter] = [
    root.router,
    billing.router,
    projects.router,
    files.router,
    uploads.router,
    apps.router,
    tasks.router,
    bundles.router,
    storage.router,
    bulk.router,
    actions.router,
]
