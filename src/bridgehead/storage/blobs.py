"""Content-addressed blob store for file contents.

Blobs are written to a temporary name while their SHA-256 is computed, fsynced, then renamed to
``<aa>/<sha256>``: a crash never leaves a half-written blob under a real key, and equal contents
are stored once (copies of a file share one blob). Nothing is read whole into memory. A multipart
upload's key is derived from its parts' SHA-256 digests instead (``<sha256 of the digests>-<parts>``,
see ``domain.uploads.blob_key``): still content-derived, and never equal to a plain key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from bridgehead.config import Settings

CHUNK = 1024 * 1024


class BlobStore(Protocol):
    """What the rest of bridgehead needs from a blob store (local disk today; S3 or a shared FS later)."""

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]: ...
    def put_file(self, src: Path, move: bool = False, key: str | None = None) -> tuple[str, int]: ...
    def open(self, key: str) -> BinaryIO: ...
    def path(self, key: str) -> Path: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]: ...
    def empty_file(self) -> Path: ...


# Files stored by ``put_file`` remembered by (path, inode, size, mtime), each until it is stored again.
RECENT_MAX = 4096


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._recent: dict[tuple[str, int, int, int], str] = {}

    def path(self, key: str) -> Path:
        if len(key) < 3 or "/" in key or "." in key:
            raise ValueError(f"bad blob key {key!r}")
        return self.root / key[:2] / key

    def _commit(self, tmp_path: Path, digest: str) -> str:
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp_path.unlink(missing_ok=True)
        else:
            os.replace(tmp_path, final)
            _fsync_dir(final.parent)
        return digest

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        sha = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=self.tmp)
        tmp_path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(tmp_path, sha.hexdigest()), size
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def put_file(self, src: Path, move: bool = False, key: str | None = None) -> tuple[str, int]:
        """Store a local file; with ``move`` it is renamed in when on the same filesystem.

        ``key`` is a content key the caller already derived (a multipart upload's, from the digests of
        its parts), sparing a read of the whole file; otherwise the file's SHA-256 is the key.

        A file stored a moment ago and unchanged since is answered from memory, once: the dispatcher
        stores finished runs' files before its write transaction, and the same call inside the
        transaction then costs a stat instead of a read and a hash.
        """
        st = src.stat()
        size = st.st_size
        seen = (str(src), st.st_ino, size, st.st_mtime_ns) if key is None and not move else None
        digest = self._recent.pop(seen, None) if seen else None
        if digest is not None and self.path(digest).exists():
            return digest, size
        digest = key
        if digest is None:
            sha = hashlib.sha256()
            with open(src, "rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    sha.update(chunk)
            digest = sha.hexdigest()
        final = self.path(digest)
        if final.exists():
            self._remember(seen, digest)
            return digest, size
        fd, name = tempfile.mkstemp(dir=self.tmp)
        os.close(fd)
        tmp_path = Path(name)
        try:
            if move:
                try:
                    os.replace(src, tmp_path)
                except OSError:
                    shutil.copyfile(src, tmp_path)
            else:
                shutil.copyfile(src, tmp_path)
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            self._remember(seen, self._commit(tmp_path, digest))
            return digest, size
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def _remember(self, seen: tuple[str, int, int, int] | None, digest: str) -> None:
        if seen is None:
            return
        if len(self._recent) >= RECENT_MAX:
            self._recent.clear()
        self._recent[seen] = digest

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def empty_file(self) -> Path:
        """A zero-byte file in the store (empty files have no blob), for staging to link to."""
        path = self.root / "empty"
        if not path.exists():
            path.touch()
        return path

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive, in chunks."""
        with self.open(key) as fh:
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_STORES: dict[Path, LocalBlobStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(settings: Settings) -> LocalBlobStore:
    """The one blob store of a data dir: every area (files, uploads, tasks, volumes) shares it."""
    root = settings.blob_dir.resolve()
    with _STORES_LOCK:
        store = _STORES.get(root)
        if store is None:
            store = _STORES[root] = LocalBlobStore(root)
        return store
