"""Self-authorising transfer URLs for upload parts and downloads.

The official client PUTs parts and GETs downloads on a session that sends no auth headers, so the
URL itself carries the permission: an HMAC-SHA256 over ``kind``, the resource and the expiry,
keyed with a secret kept in the data dir (created once, mode 0600). Anyone holding the URL may use it
until it expires; nothing else is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from bridgehead.config import Settings
from bridgehead.domain.errors import Forbidden

_KEYS: dict[Path, bytes] = {}
_LOCK = threading.Lock()


def secret_key(data_dir: Path) -> bytes:
    """The signing key of a data dir, created atomically on first use so that restarts keep URLs valid."""
    path = (data_dir / "secret.key").resolve()
    with _LOCK:
        cached = _KEYS.get(path)
        if cached is not None:
            return cached
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if another process won the race: keep theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        key = path.read_bytes()
        if len(key) < 32:
            raise RuntimeError(f"signing key {path} is truncated; delete it to create a new one")
        _KEYS[path] = key
        return key


def _mac(key: bytes, kind: str, resource: str, expires: int) -> str:
    msg = f"{kind}\n{resource}\n{expires}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def sign(settings: Settings, kind: str, resource: str, ttl: int | None = None) -> tuple[int, str]:
    """``(expires_epoch, signature)`` for a resource such as ``<file id>`` or ``<upload id>/<part>``."""
    expires = int(time.time()) + (settings.transfer_url_ttl if ttl is None else ttl)
    return expires, _mac(secret_key(settings.data_dir), kind, resource, expires)


def verify(settings: Settings, kind: str, resource: str, expires: str | None, signature: str | None) -> None:
    """Raise 403 unless the signature matches and has not expired."""
    if not expires or not signature or not expires.isdigit():
        raise Forbidden("This transfer URL is not signed; request a new one from the API.")
    good = _mac(secret_key(settings.data_dir), kind, resource, int(expires))
    if not hmac.compare_digest(good, signature):
        raise Forbidden("This transfer URL's signature is not valid; request a new one from the API.")
    if int(expires) < time.time():
        raise Forbidden("This transfer URL has expired; request a new one from the API.")
