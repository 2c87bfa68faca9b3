"""Cross-cutting wire conventions (sbg-api.md §1, sbg-client.md §1-§5) checked over plain HTTP."""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.conftest import start_server
from tests.support.sbg import assert_sbg_error

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> dict[str, Any]:
    resp = http.post("/projects", json={"name": f"conventions {uuid.uuid4().hex[:6]}", "tags": ["t1"]})
    assert resp.status_code == 201
    body: dict[str, Any] = resp.json()
    return body


# --- authentication -------------------------------------------------------------------------


def test_token_header_and_bearer_both_authenticate(
    server: EmbeddedServer, ssl_context: ssl.SSLContext
) -> None:
    for headers in ({"X-SBG-Auth-Token": server.token}, {"Authorization": f"Bearer {server.token}"}):
        resp = httpx.get(server.url + "/user", headers=headers, verify=ssl_context)
        assert resp.status_code == 200
        assert resp.json()["username"] == server.username


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-SBG-Auth-Token": "f" * 32}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}],
)
def test_missing_or_bad_token_is_401_json(
    server: EmbeddedServer, ssl_context: ssl.SSLContext, headers: dict[str, str]
) -> None:
    resp = httpx.get(server.url + "/projects", headers=headers, verify=ssl_context)
    body = assert_sbg_error(resp, 401, 90001)
    assert "token" in body["message"]
    assert "x-request-id" in resp.headers and "x-ratelimit-limit" in resp.headers


def test_healthz_needs_no_token(server: EmbeddedServer, ssl_context: ssl.SSLContext) -> None:
    assert httpx.get(server.root + "/healthz", verify=ssl_context).status_code == 200


# --- one error shape everywhere ---------------------------------------------------------------


def test_unknown_route_is_sbg_404(http: httpx.Client) -> None:
    body = assert_sbg_error(http.get("/no/such/thing"), 404, 90003)
    assert "/v2/no/such/thing" in body["message"]
    assert_sbg_error(http.get(http.base_url.join("/elsewhere")), 404, 90003)


def test_wrong_method_is_sbg_405(http: httpx.Client) -> None:
    body = assert_sbg_error(http.put("/user", json={}), 405, 90006)
    assert "PUT" in body["message"]


def test_malformed_json_is_400_90009(http: httpx.Client) -> None:
    resp = http.post("/projects", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert "JSON" in assert_sbg_error(resp, 400, 90009)["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": 5}, "name"), ({}, "name"), ({"name": "x", "tags": "a,b"}, "tags"), ([1, 2], "")],
)
def test_wrong_types_and_missing_fields_name_the_field(http: httpx.Client, body: Any, field: str) -> None:
    message = assert_sbg_error(http.post("/projects", json=body), 400)["message"]
    assert field in message


# --- collections ----------------------------------------------------------------------------


def test_collection_envelope_links_and_total(http: httpx.Client, server: EmbeddedServer) -> None:
    for i in range(5):
        http.post("/projects", json={"name": f"envelope {i}"}).raise_for_status()
    resp = http.get("/projects", params={"name": "envelope", "limit": 2, "offset": 2})
    assert resp.status_code == 200
    assert resp.headers["X-Total-Matching-Query"] == "5"
    body = resp.json()
    assert set(body) == {"href", "items", "links"}
    assert len(body["items"]) == 2
    assert body["href"] == f"{server.url}/projects?name=envelope&offset=2&limit=2"
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert rels == {
        "next": f"{server.url}/projects?name=envelope&offset=4&limit=2",
        "prev": f"{server.url}/projects?name=envelope&offset=0&limit=2",
    }
    last = http.get(rels["next"]).json()
    assert len(last["items"]) == 1
    assert [link["rel"] for link in last["links"]] == ["prev"]


def test_default_and_maximum_page_size(http: httpx.Client) -> None:
    for i in range(55):
        http.post("/projects", json={"name": f"pagesize {i}"}).raise_for_status()
    assert len(http.get("/projects", params={"name": "pagesize"}).json()["items"]) == 50
    big = http.get("/projects", params={"limit": 1000})
    assert big.status_code == 200
    assert len(big.json()["items"]) <= 100
    assert "limit=100" in big.json()["href"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "x"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "1.5"}, "offset"),
    ],
)
def test_bad_limit_or_offset_is_400(http: httpx.Client, params: dict[str, Any], field: str) -> None:
    assert field in assert_sbg_error(http.get("/projects", params=params), 400)["message"]


# --- fields selector ------------------------------------------------------------------------


def test_fields_selector_forms(http: httpx.Client, project: dict[str, Any]) -> None:
    path = f"/projects/{project['id']}"
    assert set(http.get(path, params={"fields": "id,name"}).json()) == {"id", "name"}
    without = http.get(path, params={"fields": "!tags,!settings"}).json()
    assert "tags" not in without and "settings" not in without and "name" in without
    assert http.get(path, params={"fields": "_all"}).json() == http.get(path).json()
    nested = http.get(path, params={"fields": "id,permissions.admin"}).json()
    assert nested == {"id": project["id"], "permissions": {"admin": True}}
    mixed = http.get(path, params={"fields": "href,permissions,!permissions.read"}).json()
    assert set(mixed) == {"href", "permissions"} and "read" not in mixed["permissions"]
    listed = http.get("/projects", params={"fields": "id", "limit": 3}).json()
    assert all(set(item) == {"id"} for item in listed["items"])
    assert "fields=id" in listed["href"], "the page href reproduces the query"
    me = http.get("/user", params={"fields": "username"}).json()
    assert me == {"username": http.get("/user").json()["username"]}


# --- tolerance of what the official client sends -------------------------------------------


def test_null_bodies_on_get_and_empty_object_on_delete(http: httpx.Client) -> None:
    json_headers = {"Content-Type": "application/json"}
    assert http.request("GET", "/user", content=b"null", headers=json_headers).status_code == 200
    assert http.request("GET", "/projects", content=b"null", headers=json_headers).status_code == 200
    created = http.post("/projects", json={"name": "to delete"}).json()
    gone = http.request("DELETE", f"/projects/{created['id']}", content=b"{}", headers=json_headers)
    assert gone.status_code == 204
    # A bodiless POST (JSON null) where a body is needed: a clear 400, not a 500.
    resp = http.post("/projects", content=b"null", headers=json_headers)
    assert "name" in assert_sbg_error(resp, 400)["message"]


def test_trailing_slashes_route_like_their_twins(http: httpx.Client, project: dict[str, Any]) -> None:
    assert http.get("/projects/").status_code == 200
    assert http.get("/user/").json()["username"]
    assert http.get(f"/projects/{project['id']}/").json()["id"] == project["id"]
    assert http.get(f"/projects/{project['id']}/members/").headers["X-Total-Matching-Query"] == "1"


def test_unknown_body_fields_are_ignored(http: httpx.Client) -> None:
    resp = http.post("/projects", json={"name": "extra fields", "colour": "blue", "nested": {"a": 1}})
    assert resp.status_code == 201
    assert "colour" not in resp.json()


def test_dates_and_absolute_hrefs(
    http: httpx.Client, project: dict[str, Any], server: EmbeddedServer
) -> None:
    body = http.get(f"/projects/{project['id']}").json()
    assert DATE.match(body["created_on"]) and DATE.match(body["modified_on"])
    assert body["href"] == f"{server.url}/projects/{project['id']}"
    assert body["type"] == "v2"
    uuid.UUID(body["billing_group"])
    member = http.get(f"/projects/{project['id']}/members").json()["items"][0]
    assert member["href"] == f"{server.url}/projects/{project['id']}/members/{server.username}"


def test_root_resource_and_rate_limit(http: httpx.Client, server: EmbeddedServer) -> None:
    root = http.get("/").json()
    assert root["user_url"] == server.url + "/user"
    assert root["rate_limit_url"] == server.url + "/rate_limit"
    first = http.get("/rate_limit")
    second = http.get("/rate_limit")
    rate = second.json()["rate"]
    assert rate["remaining"] == first.json()["rate"]["remaining"], "/rate_limit does not count"
    assert second.headers["X-RateLimit-Remaining"] == str(rate["remaining"])
    assert second.headers["X-RateLimit-Reset"] == str(rate["reset"])
    assert second.json()["instance_limit"]["limit"] == -1


def test_rate_headers_and_request_id_on_every_response(http: httpx.Client) -> None:
    ids = set()
    for resp in (http.get("/user"), http.get("/nowhere"), http.post("/projects", json={})):
        for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-Id"):
            assert header in resp.headers, (resp.request.url, header)
        assert int(resp.headers["X-RateLimit-Reset"]) > 1_600_000_000
        ids.add(resp.headers["X-Request-Id"])
    assert len(ids) == 3
    before = int(http.get("/user").headers["X-RateLimit-Remaining"])
    after = int(http.get("/user").headers["X-RateLimit-Remaining"])
    assert after == before - 1


# --- hrefs behind a proxy and with --public-url ---------------------------------------------


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[EmbeddedServer]:
    srv = start_server(
        tmp_path_factory.mktemp("proxied"), tls_dir, extra_env={"BRIDGEHEAD_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    )
    try:
        yield srv
    finally:
        srv.stop()


def test_forwarded_headers_only_when_trusted(
    proxied: EmbeddedServer, server: EmbeddedServer, ssl_context: ssl.SSLContext
) -> None:
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sbg.example.org"}
    trusted = httpx.get(
        proxied.url + "/", headers={"X-SBG-Auth-Token": proxied.token, **fwd}, verify=ssl_context
    )
    assert trusted.json()["user_url"] == "https://sbg.example.org/v2/user"
    me = httpx.get(
        proxied.url + "/user", headers={"X-SBG-Auth-Token": proxied.token, **fwd}, verify=ssl_context
    )
    assert me.json()["href"] == f"https://sbg.example.org/v2/users/{proxied.username}"
    # The default server has no --forwarded-allow-ips: the headers are ignored.
    plain = httpx.get(server.url + "/", headers={"X-SBG-Auth-Token": server.token, **fwd}, verify=ssl_context)
    assert plain.json()["user_url"] == server.url + "/user"


def test_public_url_wins(tmp_path: Path, tls_dir: Path, ssl_context: ssl.SSLContext) -> None:
    srv = start_server(tmp_path, tls_dir, extra_env={"BRIDGEHEAD_PUBLIC_URL": "https://api.lab.test/v2/"})
    try:
        body = httpx.get(
            srv.url + "/user", headers={"X-SBG-Auth-Token": srv.token}, verify=ssl_context
        ).json()
        assert body["href"] == f"https://api.lab.test/v2/users/{srv.username}"
    finally:
        srv.stop()
