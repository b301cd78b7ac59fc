"""The embedded broker: amqtt (MQTT 3.1.1) in a background thread, for laptops and tests.

amqtt is an optional dependency (``pip install manta-mqtt[broker]``); production sites run
Mosquitto with a config from ``broker_config/``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("manta_mqtt.broker")


class _SnapshotDict(dict):  # type: ignore[type-arg]
    """A dict whose iteration walks a copy of its keys, so it may change meanwhile."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return list(super().items())

    def keys(self) -> list[Any]:  # type: ignore[override]
        return list(super().keys())

    def values(self) -> list[Any]:  # type: ignore[override]
        return list(super().values())


class EmbeddedBroker:
    """Run an amqtt broker on ``host:port`` (port 0 picks a free one) until :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded broker did not start in time")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # report any start failure to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._broker.shutdown())
        loop.close()

    async def _start(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the embedded broker needs amqtt: pip install 'manta-mqtt[broker]'") from exc
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        # amqtt 0.12 iterates its subscription table with awaits inside the loop when a client
        # connects; a subscription made meanwhile raises "dictionary changed size during
        # iteration" and leaves that client connected but dead. Iterating a snapshot avoids it.
        self._broker._subscriptions = _SnapshotDict(self._broker._subscriptions)
        await self._broker.start()
        if self.port == 0:  # amqtt exposes the bound port only through its server object
            server = self._broker._servers["default"]
            self.port = server.instance.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
