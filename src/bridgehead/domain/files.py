"""Files and folders: lookup with permission checks, name rules, and placing a new file in a folder."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, String, Text, TextClause, and_, func, select, text, type_coerce
from sqlalchemy.orm import Session

from bridgehead.db.base import utcnow
from bridgehead.db.models import File, Project, User
from bridgehead.db.models.files import FILE, FOLDER, FolderCount
from bridgehead.db.models.uploads import FileMetadata
from bridgehead.domain import projects
from bridgehead.domain.errors import BadRequest, Conflict, NotFound
from bridgehead.storage.blobs import LocalBlobStore

MAX_NAME = 255
FILE_ID_RE = re.compile(r"^[0-9a-f]{24}$")
Conflicts = Literal["error", "overwrite", "autorename"]


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise BadRequest("File name must not be empty.", code=5024, field=field)
    if "/" in name or "\x00" in name:
        raise BadRequest(f"File name {name!r} must not contain '/'.", code=5024, field=field)
    if len(name.encode()) > MAX_NAME:
        raise BadRequest(f"File name is longer than {MAX_NAME} bytes.", code=5024, field=field)
    return name


def find(session: Session, file_id: str) -> File | None:
    if not isinstance(file_id, str) or not FILE_ID_RE.match(file_id):
        return None
    return session.get(File, file_id)


def get(
    session: Session, user: User, file_id: str, permission: str = "read", field: str = "id"
) -> tuple[File, projects.Access]:
    """A file the caller may act on: 404 (5002) when missing, 403 when not allowed."""
    found = find(session, file_id)
    if found is None:
        raise NotFound(f"File {file_id} does not exist.", code=5002, field=field)
    project = session.get(Project, found.project_id)
    assert project is not None
    return found, projects.access_to(session, user, project, permission)


def folder(
    session: Session, user: User, folder_id: str, permission: str = "read", field: str = "parent"
) -> tuple[File, projects.Access]:
    found, acc = get(session, user, folder_id, permission, field)
    if found.type != FOLDER:
        raise BadRequest(f"{folder_id} is not a folder.", code=5022, field=field)
    return found, acc


def root_folder(session: Session, project: Project) -> File:
    root = session.get(File, project.root_folder)
    assert root is not None
    return root


def child(session: Session, parent_id: str, name: str) -> File | None:
    return session.scalar(select(File).where(File.parent_id == parent_id, File.name == name))


def free_name(session: Session, parent_id: str, name: str) -> str:
    """The platform's autorename: ``_1_name``, ``_2_name``, ... until the name is free."""
    candidate, n = name, 0
    while child(session, parent_id, candidate) is not None:
        n += 1
        candidate = f"_{n}_{name}"
    return candidate


def place_file(
    session: Session,
    *,
    project: Project,
    parent: File,
    name: str,
    blob_key: str | None,
    size: int,
    conflict: Conflicts = "error",
    origin_task: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    storage: dict[str, Any] | None = None,
) -> File:
    """Create a file row under ``parent``, resolving a name clash as asked.

    ``overwrite`` replaces the content of an existing file (keeping its id); a folder in the
    way is never overwritten.
    """
    name = check_name(name)
    existing = child(session, parent.id, name)
    now = utcnow()
    if existing is not None:
        if conflict == "overwrite" and existing.type == FILE:
            existing.blob_key, existing.size, existing.modified_on = blob_key, size, now
            if origin_task is not None:
                existing.origin_task = origin_task
            if metadata is not None:
                existing.metadata_ = dict(metadata)
            session.flush()
            return existing
        if conflict == "autorename":
            name = free_name(session, parent.id, name)
        else:
            raise Conflict(f"A file named {name!r} already exists in this folder.", code=5003, field="name")
    created = File(
        project_id=project.id,
        parent_id=parent.id,
        name=name,
        type=FILE,
        size=size,
        blob_key=blob_key,
        origin_task=origin_task,
        metadata_=dict(metadata or {}),
        tags=list(tags or []),
        storage=dict(storage or {"type": "PLATFORM"}),
        created_on=now,
        modified_on=now,
    )
    session.add(created)
    session.flush()
    return created


def make_folder(
    session: Session, *, project: Project, parent: File, name: str, exist_ok: bool = False
) -> File:
    name = check_name(name)
    existing = child(session, parent.id, name)
    if existing is not None:
        if exist_ok and existing.type == FOLDER:
            return existing
        raise Conflict(f"A file or folder named {name!r} already exists here.", code=5030, field="name")
    now = utcnow()
    created = File(
        project_id=project.id,
        parent_id=parent.id,
        name=name,
        type=FOLDER,
        created_on=now,
        modified_on=now,
        storage={"type": "PLATFORM"},
    )
    session.add(created)
    session.flush()
    return created


def blob_in_use(session: Session, blob_key: str) -> bool:
    """Copies share blobs; a blob may be deleted only when no file row points at it."""
    return session.scalar(select(File.id).where(File.blob_key == blob_key).limit(1)) is not None


# ---------------------------------------------------------------------------------------------------
# Validation of user-supplied metadata and tags

MAX_META_KEYS = 1000
MAX_META_KEY = 100
MAX_META_VALUE = 300
MAX_TAGS = 1000
MAX_TAG = 128


def check_metadata(value: Any, field: str = "metadata", allow_null: bool = False) -> dict[str, Any]:
    """Metadata is a map of strings (≤1000 keys, key ≤100 bytes, value ≤300 bytes); 5006 otherwise.

    Numbers and booleans are turned into strings as the platform does; ``None`` survives only where
    it means "remove this key" (a merge).
    """
    if not isinstance(value, dict):
        raise BadRequest(f"'{field}' must be a JSON object of string values.", code=5006, field=field)
    if len(value) > MAX_META_KEYS:
        raise BadRequest(f"'{field}' has more than {MAX_META_KEYS} keys.", code=5006, field=field)
    out: dict[str, Any] = {}
    for key, val in value.items():
        if not key or len(key.encode()) > MAX_META_KEY:
            raise BadRequest(
                f"Metadata key {key[:40]!r} must be 1 to {MAX_META_KEY} bytes long.", code=5006, field=field
            )
        if val is None:
            if not allow_null:
                raise BadRequest(
                    f"Metadata value of {key!r} must be a string, not null.", code=5006, field=field
                )
            out[key] = None
            continue
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, int | float):
            val = str(val)
        if not isinstance(val, str):
            raise BadRequest(f"Metadata value of {key!r} must be a string.", code=5006, field=field)
        if len(val.encode()) > MAX_META_VALUE:
            raise BadRequest(
                f"Metadata value of {key!r} is longer than {MAX_META_VALUE} bytes.", code=5006, field=field
            )
        out[key] = val
    return out


def merge_metadata(current: dict[str, Any], patch: dict[str, Any], field: str = "metadata") -> dict[str, Any]:
    merged = dict(current)
    for key, val in patch.items():
        if val is None:
            merged.pop(key, None)
        else:
            merged[key] = val
    if len(merged) > MAX_META_KEYS:
        raise BadRequest(f"'{field}' would have more than {MAX_META_KEYS} keys.", code=5006, field=field)
    return merged


def check_tags(value: Any, field: str = "tags") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise BadRequest(f"'{field}' must be a JSON list of strings.", field=field)
    if len(value) > MAX_TAGS:
        raise BadRequest(f"'{field}' has more than {MAX_TAGS} tags.", field=field)
    for tag in value:
        if not tag or len(tag.encode()) > MAX_TAG:
            raise BadRequest(f"Each tag must be 1 to {MAX_TAG} bytes long.", field=field)
    return list(dict.fromkeys(value))


# ---------------------------------------------------------------------------------------------------
# Queries


@dataclass
class FileFilter:
    names: list[str] = field(default_factory=list)
    metadata: dict[str, list[str]] = field(default_factory=dict)
    origin_task: str | None = None
    tags: list[str] = field(default_factory=list)


def _tag_condition(session: Session, tags: list[str]) -> TextClause:
    """Files carrying any of ``tags``; the JSON list is searched with each dialect's own function."""
    if session.get_bind().dialect.name == "postgresql":
        return text("jsonb_exists_any(CAST(files.tags AS jsonb), :tag_list)").bindparams(tag_list=tags)
    marks = ", ".join(f":tag_{i}" for i in range(len(tags)))
    cond = text(f"EXISTS (SELECT 1 FROM json_each(files.tags) AS t WHERE t.value IN ({marks}))")
    return cond.bindparams(**{f"tag_{i}": t for i, t in enumerate(tags)})


# The columns a listing serialises, read without building ORM objects: at 100 items a page, identity
# map bookkeeping and attribute instrumentation cost more than the query. JSON and time columns arrive
# as stored (SQLite: text) and are decoded by ``schemas.files.listed_out``; PostgreSQL's driver may
# already hand back objects. The order is the one ``listed_out`` unpacks.
METADATA = FileMetadata.__table__
LISTED = (
    File.id,
    File.name,
    File.size,
    File.parent_id,
    File.type,
    type_coerce(File.created_on, String).label("created_on"),
    type_coerce(File.modified_on, String).label("modified_on"),
    File.origin_task,
    type_coerce(File.storage, Text).label("storage"),
    type_coerce(File.metadata_, Text).label("metadata_"),
    type_coerce(File.tags, Text).label("tags"),
)


def list_children(
    session: Session, folder_id: str, flt: FileFilter, offset: int, limit: int, after: str | None = None
) -> tuple[list[Row[*tuple[Any, ...]]], int]:
    """One page of a folder's direct children matching ``flt`` (names OR, tags OR, metadata keys AND),
    as rows of ``LISTED`` for ``schemas.files.listed_out``.

    ``after`` (a name) pages by key instead of offset, for the continuation-token calls.
    """
    conds: list[ColumnElement[bool] | TextClause] = [File.parent_id == folder_id]
    if flt.names:
        conds.append(File.name.in_(flt.names))
    if flt.origin_task:
        conds.append(File.origin_task == flt.origin_task)
    if flt.tags:
        conds.append(_tag_condition(session, flt.tags))
    # Metadata filters drive the query from the (key, value, file_id) index, joined per key: the join
    # form lets SQLite start from the few matching index entries instead of scanning the folder.
    count_q = select(func.count()).select_from(File)
    rows_q = select(*LISTED)
    for n, (key, values) in enumerate(flt.metadata.items()):
        meta = METADATA.alias(f"meta_{n}")  # a Core alias: the ORM's ``aliased`` adapts every column
        on = and_(meta.c.file_id == File.id, meta.c.key == key, meta.c.value.in_(values))
        count_q, rows_q = count_q.join(meta, on), rows_q.join(meta, on)
    # Names are unique within a folder, so ordering by name alone is stable and walks the index. With
    # metadata joins the matches are few: ``name || ''`` keeps SQLite from walking the whole folder in
    # name order just to avoid sorting them.
    order = File.name + "" if flt.metadata else File.name
    page_q = rows_q.where(*conds) if after is None else rows_q.where(*conds, File.name > after)
    rows = list(session.execute(page_q.order_by(order).offset(offset).limit(limit)))
    if after is None and (0 < len(rows) < limit or (offset == 0 and not rows)):
        return rows, offset + len(rows)  # a partial page tells the total without counting
    if len(conds) == 1 and not flt.metadata:
        return rows, child_count(session, folder_id)
    return rows, session.scalar(count_q.where(*conds)) or 0


def child_count(session: Session, folder_id: str) -> int:
    """A folder's number of direct children, from the trigger-kept ``folder_counts`` (no row: none)."""
    return session.scalar(select(FolderCount.children).where(FolderCount.folder_id == folder_id)) or 0


def listing_folder(
    session: Session, user: User, project_id: str | None, parent_id: str | None
) -> tuple[str, projects.Access]:
    """The id of the folder ``GET /files`` lists: a project's root or a folder (exactly one must be
    given). A project's root is not loaded: its id is all a listing needs."""
    if project_id and parent_id:
        raise BadRequest("Give either 'project' or 'parent', not both.", code=5031, field="parent")
    if parent_id:
        found, acc = folder(session, user, parent_id, "read", "parent")
        return found.id, acc
    if project_id:
        acc = projects.access(session, user, project_id, "read")
        return acc.project.root_folder, acc
    raise BadRequest("Query parameter 'project' or 'parent' is required.", code=5029, field="project")


def project_sbg_id(session: Session, project_id: int) -> str:
    project = session.get(Project, project_id)
    assert project is not None
    return project.sbg_id


# ---------------------------------------------------------------------------------------------------
# Changes


def destination(
    session: Session, user: User, project_id: Any, parent_id: Any
) -> tuple[File, projects.Access]:
    """Where a new/copied/moved item goes: a project's root or a folder, with write permission."""
    if project_id is not None and not isinstance(project_id, str):
        raise BadRequest("'project' must be a string 'owner/project'.", code=5005, field="project")
    if parent_id is not None and not isinstance(parent_id, str):
        raise BadRequest("'parent' must be a folder id string.", code=5022, field="parent")
    if project_id and parent_id:
        raise BadRequest("Give either 'project' or 'parent', not both.", code=5031, field="parent")
    if parent_id:
        found = find(session, parent_id)
        if found is None:
            raise NotFound(f"Destination folder {parent_id} does not exist.", code=5026, field="parent")
        return folder(session, user, parent_id, "write", "parent")
    if project_id:
        acc = projects.access(session, user, project_id, "write")
        return root_folder(session, acc.project), acc
    raise BadRequest("Either 'project' or 'parent' is required.", code=5029, field="project")


def rename(session: Session, target: File, name: Any) -> None:
    name = check_name(name)
    if name == target.name:
        return
    if target.parent_id is None:
        raise BadRequest("The project's root folder cannot be renamed.", code=5023, field="name")
    if child(session, target.parent_id, name) is not None:
        raise Conflict(f"A file named {name!r} already exists in this folder.", code=5003, field="name")
    target.name = name


def edit(
    session: Session,
    target: File,
    *,
    name: Any = None,
    metadata: Any = None,
    tags: Any = None,
    merge: bool = True,
    fields_set: set[str] | None = None,
) -> File:
    """Rename and/or change metadata and tags. ``merge`` merges metadata (``null`` drops a key);
    otherwise metadata and tags given replace the old ones."""
    given = fields_set if fields_set is not None else {"name", "metadata", "tags"}
    if "name" in given and name is not None:
        rename(session, target, name)
    if "metadata" in given and (metadata is not None or not merge):
        if target.is_folder:
            raise BadRequest("Folders carry no metadata.", code=5025, field="metadata")
        checked = check_metadata(metadata if metadata is not None else {}, allow_null=merge)
        target.metadata_ = merge_metadata(target.metadata_ or {}, checked) if merge else checked
    if "tags" in given and (tags is not None or not merge):
        if target.is_folder:
            raise BadRequest("Folders carry no tags.", code=5027, field="tags")
        target.tags = check_tags(tags if tags is not None else [])
    target.modified_on = utcnow()
    session.flush()
    return target


def delete_file(session: Session, target: File) -> str | None:
    """Delete a file or an empty folder; returns the blob key to collect once committed."""
    if target.parent_id is None:
        raise BadRequest("The project's root folder cannot be deleted.", code=5033, field="id")
    has_children = select(File.id).where(File.parent_id == target.id).limit(1)
    if target.is_folder and session.scalar(has_children) is not None:
        raise BadRequest(f"Folder {target.id} is not empty; delete its contents first.", code=5021)
    key = target.blob_key
    session.delete(target)
    session.flush()
    return key


def copy_file(session: Session, source: File, project: Project, parent: File, name: Any = None) -> File:
    if source.is_folder:
        raise BadRequest("Folders cannot be copied; copy the files inside them.", code=5018, field="id")
    new_name = source.name if name is None else name
    return place_file(
        session,
        project=project,
        parent=parent,
        name=new_name,
        blob_key=source.blob_key,
        size=source.size,
        origin_task=source.origin_task,
        metadata=dict(source.metadata_ or {}),
        tags=list(source.tags or []),
        storage=dict(source.storage or {"type": "PLATFORM"}),
    )


def move_file(
    session: Session,
    target: File,
    project: Project,
    parent: File,
    name: Any = None,
    conflict: Conflicts = "error",
) -> File:
    """Move (and optionally rename) keeping the id; a folder carries its whole subtree along."""
    if target.parent_id is None:
        raise BadRequest("The project's root folder cannot be moved.", code=5033, field="id")
    new_name = check_name(target.name if name is None else name)
    if target.is_folder:
        cursor: File | None = parent
        while cursor is not None:
            if cursor.id == target.id:
                raise BadRequest("A folder cannot be moved into itself.", code=5033, field="parent")
            cursor = session.get(File, cursor.parent_id) if cursor.parent_id else None
    if parent.id == target.parent_id and new_name == target.name:
        return target
    clash = child(session, parent.id, new_name)
    if clash is not None and clash.id != target.id:
        if conflict == "autorename" and not target.is_folder:
            new_name = free_name(session, parent.id, new_name)
        else:
            raise Conflict(
                f"A file named {new_name!r} already exists in the destination.", code=5003, field="name"
            )
    if target.project_id != project.id:
        pending = [target.id]
        while pending:
            ids = pending
            pending = []
            for row in session.scalars(select(File).where(File.parent_id.in_(ids))):
                row.project_id = project.id
                if row.is_folder:
                    pending.append(row.id)
        target.project_id = project.id
    if target.parent_id != parent.id:
        lock_counts(session, [target.parent_id, parent.id])
    target.parent_id, target.name, target.modified_on = parent.id, new_name, utcnow()
    session.flush()
    return target


def lock_counts(session: Session, folder_ids: list[str | None]) -> None:
    """Lock the ``folder_counts`` rows a move will update, in id order (PostgreSQL).

    The move trigger updates the old parent's count, then the new one's: two moves in opposite
    directions between the same folders would each hold one row and wait for the other (a deadlock
    that PostgreSQL breaks by failing one request). Taking both rows first, in one order, makes the
    second move wait instead. SQLite has a single writer, so it needs nothing."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted({i for i in folder_ids if i is not None})
    query = select(FolderCount.folder_id).where(FolderCount.folder_id.in_(ids))
    session.execute(query.order_by(FolderCount.folder_id).with_for_update())


def collect_blobs(session: Session, store: LocalBlobStore, keys: list[str | None]) -> int:
    """Remove blobs no file row uses any more (call in a fresh transaction after the delete committed)."""
    removed = 0
    for key in {k for k in keys if k}:
        if not blob_in_use(session, key):
            store.delete(key)
            removed += 1
    return removed
