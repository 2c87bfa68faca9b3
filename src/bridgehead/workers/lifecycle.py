"""Start and stop the background work of ``bridgehead serve`` (the dispatcher loop and friends)."""

from __future__ import annotations

from typing import Any

from bridgehead.api.deps import AppState


def start(state: AppState) -> Any:
    """Start background loops; returns a handle for ``stop``. No loop runs with ``dispatcher`` off."""
    if not state.settings.dispatcher:
        return None
    return None


def stop(state: AppState, handle: Any) -> None:
    del state, handle
