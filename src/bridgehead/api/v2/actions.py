"""``/action/*``: copying files into a project in one call, and user feedback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response

from bridgehead.api.deps import CtxDep
from bridgehead.domain import asyncjobs
from bridgehead.domain.errors import BadRequest, SbgError
from bridgehead.schemas.common import Wire

router = APIRouter(tags=["actions"])
log = logging.getLogger(__name__)

FEEDBACK_TYPES = ("IDEA", "THOUGHT", "PROBLEM")


class CopyFiles(Wire):
    project: Any = None
    file_ids: Any = None


class Feedback(Wire):
    type: Any = None
    text: Any = None
    referrer: Any = None


@router.post("/action/files/copy", summary="Copy files into a project's root")
def copy_files(ctx: CtxDep, body: CopyFiles | None = None) -> Response:
    body = body or CopyFiles()
    ids = asyncjobs.check_items(body.file_ids, "file_ids")
    out: dict[str, Any] = {}
    with ctx.db.write() as s:
        outcomes = asyncjobs.copy_to_project(s, ctx.user, body.project, ids)
        for fid, outcome in zip(ids, outcomes, strict=True):
            key = str(fid)
            if isinstance(outcome, SbgError):
                out[key] = {"status": "ERROR", **asyncjobs.error_entry(outcome)["error"]}
            else:
                out[key] = {"status": "OK", "new_file_id": outcome.id, "new_file_name": outcome.name}
    return ctx.raw(out)


@router.post("/action/notifications/feedback", status_code=204, summary="Send feedback to the operators")
def feedback(ctx: CtxDep, body: Feedback | None = None) -> Response:
    body = body or Feedback()
    kind = body.type.upper() if isinstance(body.type, str) else None
    if kind not in FEEDBACK_TYPES:
        raise BadRequest("'type' must be IDEA, THOUGHT or PROBLEM.", field="type")
    if not isinstance(body.text, str) or not body.text.strip():
        raise BadRequest("'text' must be a non-empty string.", field="text")
    log.info("feedback from %s (%s): %s", ctx.user.username, kind, body.text[:2000])
    return ctx.no_content()
