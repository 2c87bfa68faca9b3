"""A ``ClusterWorker`` whose fake engine appends each submitted task id to a file (to prove no double runs).

Run as ``python -m tests.cluster.counting_worker WORKER_ID LOG``; configuration comes from the usual
``BRIDGEHEAD_*`` variables (database URL, data dir, max cores).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from bridgehead.config import Settings
from bridgehead.db.session import Database
from bridgehead.engines.base import RunSpec
from bridgehead.engines.fake import FakeEngine
from bridgehead.workers.worker import ClusterWorker


class CountingEngine(FakeEngine):
    def __init__(self, settings: Settings, log: Path) -> None:
        super().__init__(settings)
        self.log = log

    def submit(self, run: RunSpec) -> dict[str, Any]:
        # O_APPEND writes of one short line are atomic, even with several processes appending.
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{run.task_id} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        return super().submit(run)


def main() -> None:
    worker_id, log = sys.argv[1], Path(sys.argv[2])
    settings = Settings(engine="fake")
    db = Database(settings.resolved_database_url, pool_size=2)
    worker = ClusterWorker(settings, db, engine=CountingEngine(settings, log), worker_id=worker_id)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())
    worker.run()


if __name__ == "__main__":
    main()
