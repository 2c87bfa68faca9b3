"""Start and stop the background work of ``bridgehead serve`` (the dispatcher loop and friends)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridgehead.api.deps import AppState
from bridgehead.config import Settings
from bridgehead.db.session import Database

if TYPE_CHECKING:
    from bridgehead.workers.dispatcher import Dispatcher
    from bridgehead.workers.transfers import TransferWorker


@dataclass
class Loops:
    dispatcher: Dispatcher
    transfers: TransferWorker

    def wake_handlers(self) -> dict[str, Callable[[], None]]:
        from bridgehead.workers import transfers

        return {"dispatcher": self.dispatcher.wake, "transfers": transfers.wake}

    def wake(self, kind: str) -> None:
        handler = self.wake_handlers().get(kind)
        if handler is not None:
            handler()

    def stop(self) -> None:
        self.transfers.stop()
        self.dispatcher.stop()


def start_loops(settings: Settings, db: Database) -> Loops:
    """The dispatcher and the transfer threads, recovered and running (in this process)."""
    from bridgehead.workers.dispatcher import Dispatcher
    from bridgehead.workers.transfers import TransferWorker

    dispatcher = Dispatcher(settings, db)
    transfers = TransferWorker(db, settings, dispatcher.worker_id).start()
    dispatcher.start()
    return Loops(dispatcher, transfers)


def start(state: AppState) -> Loops | None:
    """Start background loops in the app's process; no loop runs with ``dispatcher`` off."""
    if not state.settings.dispatcher:
        return None
    loops = start_loops(state.settings, state.db)
    state.waker = loops.wake
    return loops


def stop(state: AppState, loops: Loops | None) -> None:
    if loops is not None:
        state.waker = None
        loops.stop()
