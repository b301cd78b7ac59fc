"""Run ``top``: one MQTT subscription, a bounded hand-off queue, and a rich screen.

Threads: paho's network thread only measures and queues each message (keeping the payload
only where :func:`.model.wanted`); a key reader thread queues keystrokes; the main thread owns
the :class:`~.model.SiteView`, folds the queue into it and redraws.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live

from ...protocol import topics
from ...protocol.messages import Discover
from ...stopping import stop_on_signals
from ...transport.mqtt import BrokerAddress, MqttLink
from .. import fleet
from .model import FILTERS, SORTS, SiteView, wanted
from .render import screen

QUEUE_BOUND = 100_000  # messages waiting for the main thread; past it they are dropped, counted
Message = tuple[str, bytes | None, int, float]  # topic, payload if wanted, size, arrival time


@dataclass
class Feed:
    """The network thread's side: measure, keep what matters, hand over."""

    messages: queue.Queue[Message] = field(default_factory=lambda: queue.Queue(QUEUE_BOUND))
    dropped: int = 0  # written by the network thread only

    def on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        try:
            self.messages.put_nowait((topic, payload if wanted(topic) else None, len(payload), time.time()))
        except queue.Full:
            self.dropped += 1

    def drain(self, view: SiteView) -> None:
        while True:
            try:
                topic, payload, size, at = self.messages.get_nowait()
            except queue.Empty:
                return
            view.take(topic, payload, size, at)


def subscribe(link: MqttLink, feed: Feed, traffic: bool) -> None:
    link.route("#", feed.on_message)
    wanted_filters = [topics.everything()] if traffic else [topics.all_node_status(), topics.all_swarm_states()]
    link.subscribe([*wanted_filters, "$SYS/broker/#"], qos=0, wait=10)
    # nodes' retained statuses may not reach a wildcard subscription (RabbitMQ): ask them
    link.publish(topics.discover(), Discover(link.client_id).to_bytes(), qos=0)


@contextmanager
def keystrokes() -> Iterator[queue.Queue[str]]:
    """Single keys from the terminal (cbreak mode, restored on exit); none when not a terminal."""
    keys: queue.Queue[str] = queue.Queue(64)
    if not sys.stdin.isatty():
        yield keys
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                key = os.read(fd, 1).decode("utf-8", "replace")
                if not keys.full():
                    keys.put(key)

    tty.setcbreak(fd)
    reader = threading.Thread(target=read, name="top-keys", daemon=True)
    reader.start()
    try:
        yield keys
    finally:
        stop.set()
        reader.join(1)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _next(options: tuple[str, ...], current: str) -> str:
    return options[(options.index(current) + 1) % len(options)]


def run(address: BrokerAddress, version: str, *, sort: str, only: str, traffic: bool, refresh: float) -> None:
    """The live screen, until ``q`` or Ctrl-C."""
    feed, view = Feed(), SiteView()
    console = Console()
    with (
        stop_on_signals() as stop,
        fleet.connected(address, version, "top") as link,
        keystrokes() as keys,
        Live(console=console, screen=True, auto_refresh=False) as live,
    ):
        subscribe(link, feed, traffic)
        drawn = 0.0
        while not stop.is_set():
            changed = False
            while not keys.empty():
                key = keys.get_nowait()
                if key in ("q", "Q"):
                    return
                if key == "s":
                    sort, changed = _next(SORTS, sort), True
                elif key == "f":
                    only, changed = _next(FILTERS, only), True
            feed.drain(view)
            now = time.time()
            if changed or now - drawn >= refresh:
                live.update(screen(view, now, str(address), sort=sort, only=only, height=console.height))
                live.refresh()
                drawn = now
            time.sleep(0.1)


def once(address: BrokerAddress, version: str, *, sort: str, only: str, settle: float, width: int) -> None:
    """One snapshot on stdout after ``settle`` seconds (for scripts, and over a plain pipe)."""
    feed, view = Feed(), SiteView()
    with fleet.connected(address, version, "top") as link:
        subscribe(link, feed, traffic=False)
        time.sleep(settle)
    feed.drain(view)
    console = Console(width=width, force_terminal=False, color_system=None)
    console.print(screen(view, time.time(), str(address), sort=sort, only=only, height=10_000))
