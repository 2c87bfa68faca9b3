"""The server starts, answers health checks and the root resource, with SBG headers."""

from __future__ import annotations

import ssl

import httpx

from bridgehead.embedded import EmbeddedServer


def test_healthz_needs_no_auth(server: EmbeddedServer, ssl_context: ssl.SSLContext) -> None:
    resp = httpx.get(server.root + "/healthz", verify=ssl_context)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_root_resource_lists_absolute_urls(server: EmbeddedServer, http: httpx.Client) -> None:
    resp = http.get("/")
    assert resp.status_code == 200
    body = resp.json()
    assert body["projects_url"] == server.url + "/projects"
    assert body["tasks_url"] == server.url + "/tasks"
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-request-id"):
        assert header in resp.headers
