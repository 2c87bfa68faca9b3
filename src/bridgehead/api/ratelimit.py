"""Per-user fixed-window rate limiting, kept in memory (per API process)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # epoch seconds

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(max(self.remaining, 0)).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class RateLimiter:
    def __init__(self, limit: int, window: int) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._windows: dict[int, tuple[int, int]] = {}

    def _start(self, now: float) -> int:
        return int(now // self.window * self.window)

    def hit(self, key: int, count: bool = True) -> tuple[bool, RateState]:
        """Record one request; returns (allowed, state)."""
        now = time.time()
        start = self._start(now)
        with self._lock:
            wstart, used = self._windows.get(key, (start, 0))
            if wstart != start:
                wstart, used = start, 0
            allowed = used < self.limit
            if count and allowed:
                used += 1
            self._windows[key] = (wstart, used)
        return allowed, RateState(self.limit, self.limit - used, wstart + self.window)

    def peek(self, key: int | None) -> RateState:
        now = time.time()
        start = self._start(now)
        used = 0
        if key is not None:
            with self._lock:
                wstart, used = self._windows.get(key, (start, 0))
                if wstart != start:
                    used = 0
        return RateState(self.limit, self.limit - used, start + self.window)
