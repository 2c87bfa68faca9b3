"""The wake-up datagrams from API processes to the loops of ``serve --workers N``."""

from __future__ import annotations

import os
import threading

from bridgehead.workers.wakeup import WakeListener, WakeSender


def test_a_wake_up_reaches_the_named_handler_only() -> None:
    woken = {"dispatcher": threading.Event(), "transfers": threading.Event()}
    listener = WakeListener({k: e.set for k, e in woken.items()}).start()
    sender = WakeSender(listener.address)
    try:
        sender("nonsense")  # ignored
        sender("transfers")
        assert woken["transfers"].wait(5)
        assert not woken["dispatcher"].is_set()
        sender("dispatcher")
        assert woken["dispatcher"].wait(5)
    finally:
        sender.close()
        listener.stop()
    assert not os.path.exists(listener.address)


def test_a_sender_whose_listener_is_gone_fails_silently() -> None:
    listener = WakeListener({})
    address = listener.address
    listener.stop()
    sender = WakeSender(address)
    sender("dispatcher")  # no exception: the loops still poll on their own
    sender.close()
