"""Wake-ups from API processes to the dispatcher and transfer loops of another process.

``serve --workers N`` runs the API in N child processes and the loops in the parent. A request that
queues work sends one datagram to the parent (``dispatcher`` or ``transfers``) so that the loop
starts its next pass at once instead of waiting out its poll interval. Datagrams are fire and
forget: a full socket buffer or a parent that is gone costs the request nothing, and the loops
still poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("dispatcher", "transfers")


class WakeSender:
    """Callable ``wake(kind)`` for an API process; one non-blocking datagram per call."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def __call__(self, kind: str) -> None:
        # OSError: the buffer is full (wake-ups are pending anyway) or the parent went away.
        with contextlib.suppress(OSError):
            self._sock.sendto(kind.encode(), self.address)

    def close(self) -> None:
        self._sock.close()


class WakeListener:
    """Binds a datagram socket in a private directory and calls the handler named by each datagram."""

    def __init__(self, handlers: dict[str, Callable[[], None]]) -> None:
        self.handlers = handlers
        self._dir = Path(tempfile.mkdtemp(prefix="bridgehead-wake-"))
        self.address = str(self._dir / "wake.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.address)
        self._thread = threading.Thread(target=self._loop, name="bridgehead-wake", daemon=True)
        self._stopped = False

    def start(self) -> WakeListener:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopped:
            try:
                data = self._sock.recv(64)
            except OSError:
                return  # closed by stop()
            handler = self.handlers.get(data.decode(errors="replace"))
            if handler is not None:
                handler()

    def stop(self) -> None:
        self._stopped = True
        # recv() does not return when another thread closes the socket: a last datagram ends it.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke, contextlib.suppress(OSError):
            poke.sendto(b"", self.address)
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()
        try:
            os.unlink(self.address)
            self._dir.rmdir()
        except OSError:
            log.warning("could not remove %s", self._dir)
