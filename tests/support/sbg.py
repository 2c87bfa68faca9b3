"""Assertions on the Seven Bridges wire shapes, shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

SBG_ERROR_KEYS = {"status", "code", "message", "more_info"}


def assert_sbg_error(resp: httpx.Response, status: int, code: int | None = None) -> dict[str, Any]:
    """The response is an SBG error: the status, a JSON body with exactly the four keys, a real code."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == SBG_ERROR_KEYS
    assert body["status"] == status
    assert isinstance(body["code"], int) and body["code"] != 0, "code 0 means maintenance to the client"
    if code is not None:
        assert body["code"] == code, body
    assert body["message"]
    return body
