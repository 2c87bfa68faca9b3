"""Apps through the unmodified sevenbridges-python client: install, revise, query, get, copy, sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sevenbridges as sbg
import yaml
from sevenbridges.errors import Conflict, Forbidden, NotFound, SbgError

from bridgehead.embedded import EmbeddedServer, cli
from tests.conftest import user_api

DATA = Path(__file__).resolve().parents[1] / "data" / "apps"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return data


@pytest.fixture(scope="module")
def projects(api: sbg.Api) -> tuple[str, str]:
    home = api.projects.create(name="apps home")
    other = api.projects.create(name="apps other")
    return home.id, other.id


def test_install_json_and_yaml(api: sbg.Api, projects: tuple[str, str]) -> None:
    home, _ = projects
    app = api.apps.install_app(id=f"{home}/wc", raw=load("wc.cwl"))
    assert app.id == f"{home}/wc" and app.revision == 0
    assert app.raw["sbg:id"] == f"{home}/wc/0"
    assert app.raw["inputs"] == load("wc.cwl")["inputs"]

    text = (DATA / "expr.cwl").read_text()
    app = api.apps.install_app(id=f"{home}/expr", raw=text, raw_format="yaml")
    assert app.revision == 0 and app.raw["class"] == "ExpressionTool"
    assert app.raw["expression"] == load("expr.cwl")["expression"]


def test_create_revision_and_get_revisions(api: sbg.Api, projects: tuple[str, str]) -> None:
    home, _ = projects
    raw = load("wc.cwl")
    api.apps.install_app(id=f"{home}/counter", raw=raw)
    app = api.apps.create_revision(id=f"{home}/counter", revision=1, raw={**raw, "label": "v2"})
    assert app.revision == 1 and app.raw["label"] == "v2"
    with pytest.raises(Conflict):
        api.apps.create_revision(id=f"{home}/counter", revision=3, raw=raw)

    latest = api.apps.get(f"{home}/counter")
    assert latest.revision == 1 and latest.raw["sbg:latestRevision"] == 1
    old = api.apps.get_revision(f"{home}/counter", 0)
    assert old.revision == 0 and old.raw["label"] == "Line counter"
    assert api.apps.get(f"{home}/counter/0").raw["sbg:id"] == f"{home}/counter/0"
    with pytest.raises(NotFound):
        api.apps.get(f"{home}/missing")


def test_query_by_project_terms_and_id(api: sbg.Api, projects: tuple[str, str]) -> None:
    home, other = projects
    api.apps.install_app(id=f"{other}/lonely", raw=load("expr.cwl"))
    listed = list(api.apps.query(project=home).all())
    assert sorted(a.id for a in listed) == sorted([f"{home}/counter", f"{home}/expr", f"{home}/wc"])
    # list items omit raw; reading it lazily fetches the app through its href
    wc = next(a for a in listed if a.name == "wc")
    assert wc.raw["sbg:id"] == f"{home}/wc/0"
    assert [a.id for a in list(api.apps.query(q=["line", "counter"]).all())] == [
        f"{home}/wc",
        f"{home}/counter",
    ]
    assert [a.id for a in list(api.apps.query(id=[f"{other}/lonely"]).all())] == [f"{other}/lonely"]
    page = api.apps.query(limit=2)
    assert page.total >= 4 and len(page) == 2
    with pytest.raises(SbgError):
        api.apps.query(visibility="everyone")


def test_copy_and_sync(api: sbg.Api, projects: tuple[str, str]) -> None:
    home, other = projects
    source = api.apps.get(f"{home}/counter")
    copied = source.copy(project=other)
    assert copied.id == f"{other}/counter" and copied.revision == 1
    assert copied.raw["sbg:copyOf"] == f"{home}/counter/1"
    assert [i["sbg:revision"] for i in copied.raw["sbg:revisionsInfo"]] == [0, 1]

    renamed = api.apps.get(f"{home}/counter/0").copy(
        project=other, name="first-only", strategy="direct", use_revision=True
    )
    assert renamed.id == f"{other}/first-only" and renamed.revision == 0
    assert renamed.raw["sbg:copyOf"] == f"{home}/counter/0"
    with pytest.raises(Conflict):
        source.copy(project=other)

    # nothing new upstream: sync keeps the copy as it is
    assert copied.sync().revision == 1
    api.apps.create_revision(id=f"{home}/counter", revision=2, raw={**load("wc.cwl"), "label": "v3"})
    synced = copied.sync()
    assert synced.revision == 2 and synced.raw["label"] == "v3"
    assert synced.raw["sbg:copyOf"] == f"{home}/counter/2"
    assert renamed.sync().raw["sbg:copyOf"] == f"{home}/counter/2"
    with pytest.raises(SbgError):
        source.sync()  # not a copy


def test_public_gallery(server: EmbeddedServer, api: sbg.Api, projects: tuple[str, str]) -> None:
    home, _ = projects
    guest = user_api(server, "gallery-guest")
    with pytest.raises(Forbidden):
        guest.apps.get(f"{home}/wc")
    assert list(guest.apps.query(visibility="public").all()) == []

    cli("admin", "set-public", home, env=server.env())
    public = list(guest.apps.query(visibility="PUBLIC").all())
    assert sorted(a.id for a in public) == sorted([f"{home}/counter", f"{home}/expr", f"{home}/wc"])
    assert guest.apps.get(f"{home}/wc").raw["sbg:id"] == f"{home}/wc/0"
    assert list(guest.apps.query().all()) == []  # the default is the caller's own projects
    with pytest.raises(Forbidden):
        guest.apps.install_app(id=f"{home}/sneaky", raw=load("wc.cwl"))
    guest_home = guest.projects.create(name="guest home")
    mine = guest.apps.get(f"{home}/wc").copy(project=guest_home.id)
    assert mine.id == f"{guest_home.id}/wc"

    cli("admin", "set-public", home, "--off", env=server.env())
    assert list(guest.apps.query(visibility="public").all()) == []
    with pytest.raises(Forbidden):
        guest.apps.get(f"{home}/wc")
