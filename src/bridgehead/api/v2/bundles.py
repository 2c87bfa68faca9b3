"""``GET /v2/tasks/{id}/bundle``: a task's diagnostics bundle (``.tar.gz``) for anyone who can read it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from bridgehead.api.deps import CtxDep
from bridgehead.domain import bundles
from bridgehead.domain.tasks import queries
from bridgehead.storage.blobs import store_for

router = APIRouter(tags=["tasks"])

CHUNK = 1 << 16


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(CHUNK):
            yield chunk
    finally:
        spool.close()


@router.get("/tasks/{task_id}/bundle", summary="Diagnostics bundle: task, app, inputs, job and engine logs")
def task_bundle(task_id: str, ctx: CtxDep) -> StreamingResponse:
    # Built completely before the response starts, so an error is still an SBG-shaped error response.
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed by _chunks)
    try:
        with ctx.db.read() as s:
            task = queries.get_task(s, ctx.user, task_id)
            bundles.write(s, ctx.settings, store_for(ctx.settings), task, ctx.api, spool)
        size = spool.tell()
    except BaseException:
        spool.close()
        raise
    headers = {
        "Content-Disposition": f'attachment; filename="task-{task_id}.tar.gz"',
        "Content-Length": str(size),
    }
    return StreamingResponse(_chunks(spool), media_type="application/gzip", headers=headers)
