"""Rate limiting as the official client sees it: a tiny limit and a short window on a dedicated server."""

from __future__ import annotations

import ssl
import time
import uuid

import httpx
import pytest
import sevenbridges as sbg
from sevenbridges.errors import TooManyRequests
from sevenbridges.http.error_handlers import rate_limit_sleeper

from bridgehead.embedded import EmbeddedServer

LIMIT = 5
WINDOW = 4
SERVER_ENV = {"BRIDGEHEAD_RATE_LIMIT": str(LIMIT), "BRIDGEHEAD_RATE_LIMIT_WINDOW": str(WINDOW)}


def _fresh_window() -> None:
    """Sleep into the start of a new fixed window so that LIMIT calls cannot straddle two windows."""
    time.sleep(WINDOW - time.time() % WINDOW + 0.05)


def _user(server: EmbeddedServer) -> str:
    return server.create_user(f"rl-{uuid.uuid4().hex[:8]}")


def test_429_carries_code_and_headers(server: EmbeddedServer, ssl_context: ssl.SSLContext) -> None:
    token = _user(server)
    client = sbg.Api(url=server.url, token=token)
    _fresh_window()
    for _ in range(LIMIT):
        client.users.me()
    # POST is never retried by the client's transport, so the 429 surfaces directly.
    with pytest.raises(TooManyRequests) as info:
        client.projects.create(name="over the limit")
    assert info.value.status == 429
    assert info.value.code == 1000
    assert "Rate limit" in (info.value.message or "")

    resp = httpx.get(server.url + "/user", headers={"X-SBG-Auth-Token": token}, verify=ssl_context)
    assert resp.status_code == 429
    assert resp.json()["code"] == 1000
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + WINDOW + 1
    assert 1 <= int(resp.headers["Retry-After"]) <= WINDOW
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert resp.headers["X-RateLimit-Limit"] == str(LIMIT)

    # /rate_limit answers (and does not count) even when the limit is used up.
    rate = httpx.get(server.url + "/rate_limit", headers={"X-SBG-Auth-Token": token}, verify=ssl_context)
    assert rate.status_code == 200
    assert rate.json()["rate"] == {"limit": LIMIT, "remaining": 0, "reset": reset}


def test_rate_limit_sleeper_waits_for_the_reset(server: EmbeddedServer) -> None:
    client = sbg.Api(url=server.url, token=_user(server), error_handlers=[rate_limit_sleeper])
    # The sleeper resends with Session.send, which skips REQUESTS_CA_BUNDLE: a self-signed
    # certificate must be set on the session itself (a real certificate needs nothing).
    client.session.verify = server.ca_file
    _fresh_window()
    started = time.monotonic()
    created = [client.projects.create(name=f"patient {i}") for i in range(LIMIT + 2)]
    elapsed = time.monotonic() - started
    assert len({p.id for p in created}) == LIMIT + 2
    assert elapsed >= 1.0, "the sixth call had to wait for the next window"
    assert client.projects.query().total == LIMIT + 2


def test_limits_are_per_user(server: EmbeddedServer) -> None:
    first = sbg.Api(url=server.url, token=_user(server))
    second = sbg.Api(url=server.url, token=_user(server))
    _fresh_window()
    for _ in range(LIMIT):
        first.users.me()
    assert second.users.me().username
    assert second.remaining == LIMIT - 1
