"""Start and stop the background work of ``bridgehead serve`` (the dispatcher loop and friends)."""

from __future__ import annotations

from typing import Any

from bridgehead.api.deps import AppState


def start(state: AppState) -> Any:
    """Start background loops; returns a handle for ``stop``. No loop runs with ``dispatcher`` off."""
    if not state.settings.dispatcher:
        return None
    from bridgehead.workers.dispatcher import Dispatcher
    from bridgehead.workers.transfers import TransferWorker

    dispatcher = Dispatcher(state.settings, state.db)
    state.extras["transfers"] = TransferWorker(state.db, state.settings, dispatcher.worker_id).start()
    dispatcher.start()
    state.extras["dispatcher"] = dispatcher
    return {"dispatcher": dispatcher}


def stop(state: AppState, handle: Any) -> None:
    transfer_worker = state.extras.pop("transfers", None)
    if transfer_worker is not None:
        transfer_worker.stop()
    if not handle:
        return
    dispatcher = handle.get("dispatcher")
    if dispatcher is not None:
        dispatcher.stop()
    state.extras.pop("dispatcher", None)
