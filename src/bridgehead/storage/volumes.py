"""Volume backends: where a volume's objects really live (a local directory or an S3 bucket).

Both present the same flat, S3-like view: a *location* is a ``/``-separated key relative to the
volume's prefix; listing with a delimiter of ``/`` yields objects and sub-prefixes. Writes go to a
temporary name first and are renamed (local) or completed as one upload (S3), so a failed export
never leaves a partial object under the requested location.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

CHUNK = 1024 * 1024


class VolumeError(Exception):
    """The backing storage refused or failed; ``missing`` marks "no such object"."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


@dataclass(frozen=True)
class ObjectInfo:
    location: str
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    objects: list[ObjectInfo]
    prefixes: list[str]
    next_token: str | None


class VolumeBackend(Protocol):
    """What imports, exports and browsing need from external storage."""

    def describe(self, location: str) -> str: ...
    def check(self) -> None: ...
    def list(self, prefix: str, limit: int, token: str | None) -> Listing: ...
    def stat(self, location: str) -> ObjectInfo | None: ...
    def walk(self, prefix: str) -> Iterator[ObjectInfo]: ...
    def read(self, location: str) -> Iterator[bytes]: ...
    def write(self, location: str, chunks: Iterable[bytes]) -> int: ...


def _join(prefix: str, location: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{location}" if prefix else location


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        value = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        value = ""
    if not value:
        raise VolumeError(f"Invalid continuation_token {token!r}.")
    return value


class LocalDirVolume:
    """A directory on the server (``root``/``prefix``); locations may not escape it."""

    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = root
        self.prefix = prefix.strip("/")
        self.base = (root / self.prefix) if self.prefix else root

    def describe(self, location: str) -> str:
        return f"{self.base}/{location}"

    def _path(self, location: str) -> Path:
        path = (self.base / location).resolve()
        base = self.base.resolve()
        if path != base and not path.is_relative_to(base):
            raise VolumeError(f"Location {location!r} points outside the volume.")
        return path

    def check(self) -> None:
        if not self.base.is_dir():
            raise VolumeError(f"Directory {self.base} does not exist on the server.")
        if not os.access(self.base, os.R_OK | os.X_OK):
            raise VolumeError(f"Directory {self.base} is not readable by the server.")

    def list(self, prefix: str, limit: int, token: str | None) -> Listing:
        folder, _, start = prefix.rpartition("/")
        directory = self._path(folder) if folder else self.base.resolve()
        after = _decode_token(token) if token else None
        if not directory.is_dir():
            return Listing([], [], None)
        names = sorted(n for n in os.listdir(directory) if n.startswith(start))
        if after is not None:
            names = [n for n in names if n > after]
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        rel = f"{folder}/" if folder else ""
        for name in names[:limit]:
            path = directory / name
            if path.is_dir():
                prefixes.append(f"{rel}{name}/")
            elif path.is_file():
                objects.append(self._info(f"{rel}{name}", path))
        more = len(names) > limit
        return Listing(objects, prefixes, _encode_token(names[limit - 1]) if more else None)

    @staticmethod
    def _info(location: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(location, st.st_size, {"size": st.st_size, "last_modified": int(st.st_mtime)})

    def stat(self, location: str) -> ObjectInfo | None:
        path = self._path(location)
        return self._info(location, path) if path.is_file() else None

    def walk(self, prefix: str) -> Iterator[ObjectInfo]:
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.base.resolve()
        base = self.base.resolve()
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                yield self._info(path.relative_to(base).as_posix(), path)

    def read(self, location: str) -> Iterator[bytes]:
        path = self._path(location)
        if not path.is_file():
            raise VolumeError(f"Object {self.describe(location)} does not exist.", missing=True)
        try:
            with open(path, "rb") as fh:
                yield from iter(lambda: fh.read(CHUNK), b"")
        except OSError as exc:
            raise VolumeError(f"Cannot read {self.describe(location)}: {exc.strerror}.") from None

    def write(self, location: str, chunks: Iterable[bytes]) -> int:
        path = self._path(location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bridgehead-")
        except OSError as exc:
            raise VolumeError(f"Cannot write {self.describe(location)}: {exc.strerror}.") from None
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size


class S3Volume:
    """A bucket (and key prefix) on any S3-compatible endpoint, through boto3."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        credentials: dict[str, Any] | None = None,
        region: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        creds = credentials or {}
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            aws_access_key_id=creds.get("access_key_id") or None,
            aws_secret_access_key=creds.get("secret_access_key") or None,
            region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60),
        )

    def describe(self, location: str) -> str:
        return f"s3://{self.bucket}/{_join(self.prefix, location)}"

    def _fail(self, exc: Exception, what: str) -> VolumeError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            missing = code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
            return VolumeError(f"{what}: {code} {err.get('Message') or ''}".strip(), missing=missing)
        return VolumeError(f"{what}: {exc}")

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._fail(exc, f"Bucket {self.bucket} is not reachable") from None

    def list(self, prefix: str, limit: int, token: str | None) -> Listing:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": _join(self.prefix, prefix) if self.prefix else prefix,
            "Delimiter": "/",
            "MaxKeys": limit,
        }
        if token:
            args["ContinuationToken"] = token
        try:
            page = self.client.list_objects_v2(**args)
        except Exception as exc:
            raise self._fail(exc, f"Cannot list {self.describe(prefix)}") from None
        cut = len(self.prefix) + 1 if self.prefix else 0
        objects = [
            ObjectInfo(
                o["Key"][cut:],
                int(o["Size"]),
                {"size": int(o["Size"]), "etag": str(o.get("ETag", "")).strip('"')},
            )
            for o in page.get("Contents", [])
        ]
        prefixes = [p["Prefix"][cut:] for p in page.get("CommonPrefixes", [])]
        nxt = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        return Listing(objects, prefixes, nxt)

    def stat(self, location: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=_join(self.prefix, location))
        except Exception as exc:
            err = self._fail(exc, f"Cannot read {self.describe(location)}")
            if err.missing:
                return None
            raise err from None
        size = int(head.get("ContentLength", 0))
        meta = {"size": size, "etag": str(head.get("ETag", "")).strip('"'), **head.get("Metadata", {})}
        return ObjectInfo(location, size, meta)

    def walk(self, prefix: str) -> Iterator[ObjectInfo]:
        full = _join(self.prefix, prefix) if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for o in page.get("Contents", []):
                    if not o["Key"].endswith("/"):
                        yield ObjectInfo(o["Key"][cut:], int(o["Size"]), {"size": int(o["Size"])})
        except VolumeError:
            raise
        except Exception as exc:
            raise self._fail(exc, f"Cannot list {self.describe(prefix)}") from None

    def read(self, location: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=_join(self.prefix, location))["Body"]
        except Exception as exc:
            err = self._fail(exc, f"Cannot read {self.describe(location)}")
            if err.missing:
                err = VolumeError(f"Object {self.describe(location)} does not exist.", missing=True)
            raise err from None
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def write(self, location: str, chunks: Iterable[bytes]) -> int:
        """One managed upload straight from the chunks (multipart for large objects; boto3 aborts a
        failed multipart upload, so nothing partial becomes visible)."""
        stream = _ChunkReader(chunks)
        try:
            self.client.upload_fileobj(
                io.BufferedReader(stream, CHUNK), self.bucket, _join(self.prefix, location)
            )
        except Exception as exc:
            raise self._fail(exc, f"Cannot write {self.describe(location)}") from None
        return stream.size


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (boto3 uploads from file objects)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.size += n
        return n


def backend_for(service: dict[str, Any]) -> VolumeBackend:
    """The backend for a stored volume ``service`` (already validated on create)."""
    kind = str(service.get("type", "")).lower()
    if kind == "local":
        return LocalDirVolume(Path(service["root"]), service.get("prefix") or "")
    if kind == "s3":
        return S3Volume(
            service["bucket"],
            service.get("prefix") or "",
            service.get("endpoint"),
            service.get("credentials"),
            service.get("region"),
        )
    raise VolumeError(f"Unsupported volume service type {service.get('type')!r}.")
