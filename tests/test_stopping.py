"""Ctrl-C as an event (manta_mqtt.stopping): a signal sets the event instead of raising."""

from __future__ import annotations

import os
import signal
import threading

from manta_mqtt.stopping import stop_on_signals


def test_sigint_and_sigterm_set_the_event_and_the_old_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with stop_on_signals() as stop:
            os.kill(os.getpid(), sig)  # no KeyboardInterrupt, no exit
            assert stop.wait(5)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_the_event_given_is_the_one_set() -> None:
    mine = threading.Event()
    with stop_on_signals(mine) as stop:
        assert stop is mine
        os.kill(os.getpid(), signal.SIGINT)
        assert mine.wait(5)


def test_off_the_main_thread_no_handler_is_installed() -> None:
    seen: list[object] = []

    def body() -> None:
        with stop_on_signals() as stop:
            seen.append(signal.getsignal(signal.SIGINT))
            stop.set()

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    assert seen == [before]
