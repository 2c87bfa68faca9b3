"""Apps and their revisions: install, resolve, list, copy and sync.

An app id is ``owner/project/name``; a revision id appends ``/N`` (N from 0, strictly incremental).
Each revision stores the CWL as posted plus the platform's ``sbg:`` bookkeeping keys, and a summary of
its inputs and outputs computed once at install (see ``domain/cwl.summarize``).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from bridgehead.db.base import utcnow
from bridgehead.db.models import Member, Project, User
from bridgehead.db.models.apps import App, AppRevision
from bridgehead.domain import cwl
from bridgehead.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from bridgehead.domain.projects import access_to

if TYPE_CHECKING:
    from cwltool.process import Process

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STRATEGIES = ("clone", "direct", "clone_direct", "transient")
# Keys the server owns: whatever a client posts under these names is replaced.
MANAGED = (
    "sbg:id",
    "sbg:revision",
    "sbg:revisionsInfo",
    "sbg:createdBy",
    "sbg:createdOn",
    "sbg:modifiedBy",
    "sbg:modifiedOn",
    "sbg:latestRevision",
    "sbg:project",
    "sbg:contributors",
    "sbg:copyOf",
)


@dataclass(frozen=True)
class AppId:
    owner: str
    project: str
    name: str
    revision: int | None

    @property
    def project_id(self) -> str:
        return f"{self.owner}/{self.project}"

    @property
    def app_id(self) -> str:
        return f"{self.owner}/{self.project}/{self.name}"


def parse_app_id(value: Any, field: str = "app", revision_allowed: bool = True) -> AppId:
    """``owner/project/name`` or ``owner/project/name/N``; anything else is 400 code 6011."""
    parts = value.split("/") if isinstance(value, str) else []
    rev: int | None = None
    if len(parts) == 4 and revision_allowed:
        if not parts[3].isdigit():
            raise BadRequest(
                f"Malformed app id {value!r}: the revision {parts[3]!r} must be a non-negative integer.",
                code=6011,
                field=field,
            )
        rev = int(parts[3])
        parts = parts[:3]
    if len(parts) != 3 or not all(parts):
        raise BadRequest(
            f"Malformed app id {value!r}; expected 'owner/project/app_name' or "
            "'owner/project/app_name/revision'.",
            code=6011,
            field=field,
        )
    owner, project, name = parts
    if not PART_RE.match(owner) or not PART_RE.match(project):
        raise BadRequest(f"Malformed app id {value!r}: bad owner or project part.", code=6011, field=field)
    if not NAME_RE.match(name):
        raise BadRequest(
            f"Invalid app name {name!r} in {value!r}: use letters, digits, '-' and '_' "
            "(up to 255 characters, starting with a letter or digit).",
            code=6011,
            field=field,
        )
    return AppId(owner, project, name, rev)


def revision_id(app: App, revision: int) -> str:
    return f"{app.sbg_id}/{revision}"


# --- access ----------------------------------------------------------------------------------------


def _project(session: Session, aid: AppId) -> Project | None:
    return session.scalar(select(Project).where(Project.owner == aid.owner, Project.slug == aid.project))


def _check_read(session: Session, user: User, project: Project, what: str) -> None:
    if project.public:
        return
    try:
        access_to(session, user, project, "read")
    except Forbidden:
        raise Forbidden(
            f"Insufficient privileges to access app {what}: you are not a member of {project.sbg_id}.",
            code=6001,
        ) from None


def _writable_project(session: Session, user: User, project_id: str, field: str) -> Project:
    owner, _, slug = project_id.partition("/")
    project = session.scalar(select(Project).where(Project.owner == owner, Project.slug == slug))
    if project is None:
        raise NotFound(f"Project {project_id} does not exist.", code=3002, field=field)
    try:
        access_to(session, user, project, "write")
    except Forbidden:
        raise Forbidden(
            f"Insufficient privileges: 'write' permission on project {project_id} is required to add apps.",
            code=6001,
            field=field,
        ) from None
    return project


def _app(session: Session, project: Project, name: str, lock: bool = False) -> App | None:
    query = select(App).where(App.project_id == project.id, App.name == name)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def _revision(session: Session, app: App, revision: int) -> AppRevision | None:
    return session.scalar(
        select(AppRevision).where(AppRevision.app_id == app.id, AppRevision.revision == revision)
    )


# An app and one of its revisions (the latest when no number is bound) in one statement, built once:
# task creation resolves an app on every request.
APP_REVISION = (
    select(App, AppRevision)
    .join(AppRevision, AppRevision.app_id == App.id)
    .where(
        App.project_id == bindparam("project_id"),
        App.name == bindparam("name"),
        AppRevision.revision == func.coalesce(bindparam("revision", type_=Integer), App.latest_revision),
    )
)

# For task creation and validation, which read the summary only: the CWL document (``raw``, a whole
# workflow with its tools embedded can be hundreds of KB of JSON) is loaded only if touched.
APP_REVISION_SUMMARY = APP_REVISION.options(defer(AppRevision.raw))


def resolve(
    session: Session,
    user: User,
    app_id: str,
    field: str = "app",
    known: Project | None = None,
    with_raw: bool = True,
) -> AppRevision:
    """One readable app revision; the latest when ``app_id`` has no revision (403 6001 / 404 6002).

    ``known``: a project the caller already loaded (a task's own), used when the app lives there.
    ``with_raw=False`` defers the CWL document (see ``APP_REVISION_SUMMARY``).
    """
    aid = parse_app_id(app_id, field)
    project = known if known is not None and known.sbg_id == aid.project_id else _project(session, aid)
    if project is None:
        raise NotFound(f"App {app_id} does not exist: no project {aid.project_id}.", code=6002, field=field)
    _check_read(session, user, project, app_id)
    row = session.execute(
        APP_REVISION if with_raw else APP_REVISION_SUMMARY,
        {"project_id": project.id, "name": aid.name, "revision": aid.revision},
    ).first()
    if row is not None:
        hit: AppRevision = row[1]
        return hit
    app = _app(session, project, aid.name)  # not found: find out which part is missing
    if app is None:
        raise NotFound(f"App {aid.app_id} does not exist.", code=6002, field=field)
    rev = app.latest_revision if aid.revision is None else aid.revision
    found = _revision(session, app, rev)
    if found is None:
        raise NotFound(
            f"App {aid.app_id} has no revision {rev} (latest is {app.latest_revision}).",
            code=6002,
            field=field,
        )
    return found


# --- install ---------------------------------------------------------------------------------------


def _epoch() -> int:
    return int(time.time())


def _stamp(
    raw: dict[str, Any],
    *,
    app_id: str,
    project_id: str,
    revision: int,
    username: str,
    previous: dict[str, Any] | None,
    copy_of: str | None,
) -> dict[str, Any]:
    """The posted CWL plus the platform's bookkeeping keys for this revision."""
    now = _epoch()
    doc = {k: v for k, v in raw.items() if k not in MANAGED}
    info = list(previous.get("sbg:revisionsInfo", [])) if previous else []
    info.append(
        {
            "sbg:revision": revision,
            "sbg:modifiedBy": username,
            "sbg:modifiedOn": now,
            "sbg:revisionNotes": raw.get("sbg:revisionNotes"),
        }
    )
    contributors = list(previous.get("sbg:contributors", [])) if previous else []
    if username not in contributors:
        contributors.append(username)
    namespaces = doc.get("$namespaces")
    if namespaces is None:
        doc["$namespaces"] = {"sbg": cwl.SBG_NAMESPACE}
    elif isinstance(namespaces, dict) and "sbg" not in namespaces:
        doc["$namespaces"] = {**namespaces, "sbg": cwl.SBG_NAMESPACE}
    doc.update(
        {
            "sbg:id": f"{app_id}/{revision}",
            "sbg:revision": revision,
            "sbg:revisionsInfo": info,
            "sbg:createdBy": previous.get("sbg:createdBy", username) if previous else username,
            "sbg:createdOn": previous.get("sbg:createdOn", now) if previous else now,
            "sbg:modifiedBy": username,
            "sbg:modifiedOn": now,
            "sbg:latestRevision": revision,
            "sbg:project": project_id,
            "sbg:contributors": contributors,
        }
    )
    if "sbg:appVersion" not in doc:
        doc["sbg:appVersion"] = [raw.get("cwlVersion")]
    if copy_of is not None:
        doc["sbg:copyOf"] = copy_of
    return doc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _add_revision(
    session: Session,
    user: User,
    project: Project,
    aid: AppId,
    raw: dict[str, Any],
    source: str | None,
    *,
    revision: int | None,
    copy_of: str | None = None,
    copy_strategy: str | None = None,
    known_summary: dict[str, Any] | None = None,
) -> tuple[AppRevision, Process | None]:
    """Store the next revision. ``known_summary`` (copies of an installed revision, whose CWL is unchanged
    apart from ``sbg:`` bookkeeping) skips loading the document again; no tool is returned then."""
    app = _app(session, project, aid.name, lock=True)
    expected = 0 if app is None else app.latest_revision + 1
    if revision is not None and revision != expected:
        if app is None:
            msg = f"App {aid.app_id} does not exist yet: its first revision is 0, not {revision}."
        else:
            msg = (
                f"Cannot create revision {revision} of app {aid.app_id}: its latest revision is "
                f"{app.latest_revision}, so the next one must be {expected}."
            )
        raise Conflict(msg, code=6003, field="revision")
    previous = _revision(session, app, app.latest_revision) if app is not None else None
    stored = _stamp(
        raw,
        app_id=aid.app_id,
        project_id=project.sbg_id,
        revision=expected,
        username=user.username,
        previous=previous.raw if previous is not None else None,
        copy_of=copy_of if copy_of is not None else (app.copy_of if app is not None else None),
    )
    full_id = f"{aid.app_id}/{expected}"
    tool: Process | None = None
    if known_summary is None:
        tool = cwl.load_process(full_id, stored, source)
        summary = cwl.summarize(tool, stored)
    else:
        summary = copy.deepcopy(known_summary)
    now = utcnow()
    if app is None:
        app = App(
            sbg_id=aid.app_id,
            project_id=project.id,
            name=aid.name,
            latest_revision=expected,
            copy_of=copy_of,
            copy_strategy=copy_strategy,
            created_on=now,
            modified_on=now,
        )
        session.add(app)
    else:
        app.latest_revision = expected
        app.modified_on = now
        if copy_of is not None:
            app.copy_of = copy_of
    app.label = _text(stored.get("label"))
    app.description = _text(stored.get("doc")) or _text(stored.get("description"))
    row = AppRevision(
        app=app, revision=expected, raw=stored, summary=summary, created_by=user.username, created_on=now
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"App {aid.app_id} was changed by another request at the same time; retry.", code=6003
        ) from None
    return row, tool


def install(
    session: Session,
    user: User,
    app_id: str,
    raw: dict[str, Any],
    source: str | None = None,
    revision: int | None = None,
) -> tuple[AppRevision, Process]:
    """Create the app (revision 0), or its next revision. ``revision`` given must be latest + 1.

    Returns the stored revision and the loaded tool; cache the tool with ``cwl.remember`` only after the
    transaction commits, so a rolled-back install never leaves a cached revision behind.
    """
    aid = parse_app_id(app_id, "app", revision_allowed=False)
    project = _writable_project(session, user, aid.project_id, "project")
    row, tool = _add_revision(session, user, project, aid, raw, source, revision=revision)
    assert tool is not None, "an install always loads the document"
    return row, tool


# --- list ------------------------------------------------------------------------------------------


def list_apps(
    session: Session,
    user: User,
    *,
    project: str | None,
    visibility: str | None,
    terms: list[str],
    ids: list[str],
    offset: int,
    limit: int,
) -> tuple[list[App], int]:
    query = select(App).join(Project, App.project_id == Project.id)
    vis = (visibility or "private").lower()
    if vis not in ("public", "private"):
        raise BadRequest(
            f"Invalid visibility {visibility!r}; expected PUBLIC or PRIVATE.", code=6012, field="visibility"
        )
    if vis == "public":
        query = query.where(Project.public.is_(True))
    elif not user.is_admin:
        query = query.where(Project.id.in_(select(Member.project_id).where(Member.user_id == user.id)))
    if project is not None:
        owner, sep, slug = project.partition("/")
        if not sep or not owner or not slug or "/" in slug:
            raise BadRequest(
                f"Malformed project id {project!r}; expected 'owner/project'.", code=3012, field="project"
            )
        target = session.scalar(select(Project).where(Project.owner == owner, Project.slug == slug))
        if target is None:
            raise NotFound(f"Project {project} does not exist.", code=3002, field="project")
        if not target.public:
            access_to(session, user, target, "read")
        query = query.where(App.project_id == target.id)
    if ids:
        wanted = [parse_app_id(i, "id").app_id for i in ids]
        query = query.where(App.sbg_id.in_(wanted))
    for term in terms:
        like = f"%{term.lower()}%"
        query = query.where(or_(App.name.ilike(like), App.label.ilike(like), App.description.ilike(like)))
    rows = list(session.scalars(query.order_by(App.created_on, App.id)))
    return rows[offset : offset + limit], len(rows)


def latest(session: Session, app: App) -> AppRevision:
    row = _revision(session, app, app.latest_revision)
    assert row is not None, "an app always has its latest revision"
    return row


# --- copy and sync ---------------------------------------------------------------------------------


def copy_app(
    session: Session,
    user: User,
    app_id: str,
    *,
    project: Any,
    name: Any = None,
    strategy: Any = None,
) -> AppRevision:
    """Copy an app into another project; ``clone`` strategies bring every revision up to the one copied."""
    source = resolve(session, user, app_id)
    if not isinstance(project, str) or not project:
        raise BadRequest("Missing destination 'project' for the app copy.", code=6009, field="project")
    strategy = strategy or "clone"
    if strategy not in STRATEGIES:
        raise BadRequest(
            f"Invalid copy strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}.", field="strategy"
        )
    parts = project.split("/")
    if len(parts) != 2 or not all(parts):
        raise BadRequest(
            f"Malformed project id {project!r}; expected 'owner/project'.", code=3012, field="project"
        )
    target_name = source.app.name if name in (None, "") else name
    aid = parse_app_id(f"{project}/{target_name}", "name", revision_allowed=False)
    dest = _writable_project(session, user, aid.project_id, "project")
    if _app(session, dest, aid.name) is not None:
        raise Conflict(f"App {aid.app_id} already exists; choose another 'name'.", code=6003, field="name")
    origin = revision_id(source.app, source.revision)
    if strategy in ("clone", "clone_direct"):
        chain = [r for r in source.app.revisions if r.revision <= source.revision]
        chain.sort(key=lambda r: r.revision)
    else:
        chain = [source]
    row: AppRevision | None = None
    for rev in chain:
        row, _ = _add_revision(
            session,
            user,
            dest,
            aid,
            _unstamped(rev.raw),
            None,
            revision=None,
            copy_of=revision_id(source.app, rev.revision) if rev is not source else origin,
            copy_strategy=strategy,
            known_summary=rev.summary or None,
        )
    assert row is not None
    return row


def _unstamped(raw: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in raw.items() if k not in MANAGED})


def _split_revision(full_id: str) -> tuple[str, int]:
    base, _, rev = full_id.rpartition("/")
    return base, int(rev)


def _upstream(session: Session, app: App) -> App | None:
    """Whom a copy follows: the copied app (``direct``) or the very first original (``clone``)."""
    if app.copy_of is None:
        return None
    base, _ = _split_revision(app.copy_of)
    current = session.scalar(select(App).where(App.sbg_id == base))
    if app.copy_strategy in ("clone", "transient"):
        seen = {app.id}
        while current is not None and current.copy_of is not None and current.id not in seen:
            seen.add(current.id)
            nxt = session.scalar(select(App).where(App.sbg_id == _split_revision(current.copy_of)[0]))
            if nxt is None:
                break
            current = nxt
    return current


def sync_app(session: Session, user: User, app_id: str) -> AppRevision:
    """Bring a copy up to its source's latest revision, as a new revision of the copy."""
    here = resolve(session, user, app_id)
    app = here.app
    _writable_project(session, user, app.sbg_id.rsplit("/", 1)[0], "app")
    if app.copy_of is None:
        raise BadRequest(f"App {app.sbg_id} is not a copy of another app: nothing to sync.", code=6010)
    source = _upstream(session, app)
    if source is None:
        raise NotFound(f"The source of app {app.sbg_id} ({app.copy_of}) no longer exists.", code=6002)
    _check_read(session, user, source.project, source.sbg_id)
    newest = latest(session, source)
    if app.copy_of == revision_id(source, newest.revision):
        return latest(session, app)
    aid = parse_app_id(app.sbg_id, "app", revision_allowed=False)
    row, _ = _add_revision(
        session,
        user,
        app.project,
        aid,
        _unstamped(newest.raw),
        None,
        revision=None,
        copy_of=revision_id(source, newest.revision),
        known_summary=newest.summary or None,
    )
    return row
