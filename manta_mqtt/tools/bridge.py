"""A central Mosquitto and a site Mosquitto bridged to it, on free loopback ports, for tests and demos.

Both run the project's files as they are (``broker_config/bridge/central.conf`` and ``site.conf``),
changed only where a test must: each listener moves to a free port on 127.0.0.1, the site's
``address`` to the central broker's port, and ``persistence_location`` to a folder of our own.
:meth:`BridgedMosquittos.start` returns once a message has crossed the bridge both ways.

    python -m manta_mqtt.tools.bridge /tmp/bridged      # starts the pair, prints both URLs; Ctrl-C stops both
"""

from __future__ import annotations

import argparse
import re
import secrets
import threading
import time
from pathlib import Path

from ..stopping import stop_on_signals
from ..transport.mqtt import BrokerAddress, MqttLink
from .mosquitto import CONFIG_DIR, MosquittoProcess, _root_user, free_port

BRIDGE_DIR = CONFIG_DIR / "bridge"
CENTRAL_CONFIG = BRIDGE_DIR / "central.conf"
SITE_CONFIG = BRIDGE_DIR / "site.conf"
#: What the bridge carries (``topic manta/# both 1``): the probes go under it, outside any protocol
#: version's root, so no coordinator or node ever reads them.
PROBE_ROOT = "manta/bridge-check"


def _replace_once(pattern: str, replacement: str, text: str, source: Path) -> str:
    text, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != 1:
        raise ValueError(f"{source} must contain exactly one line matching {pattern!r}")
    return text


def render(config: Path, *, port: int, data: Path, central_port: int | None = None) -> str:
    """``config`` listening on ``port``, persisting in ``data``; a site's bridge to ``central_port``."""
    text = _replace_once(r"^listener \d+ 127\.0\.0\.1$", f"listener {port} 127.0.0.1", config.read_text(), config)
    if central_port is not None:
        text = _replace_once(r"^address 127\.0\.0\.1:\d+$", f"address 127.0.0.1:{central_port}", text, config)
    data.mkdir(parents=True, exist_ok=True)
    return f"{text}{_root_user()}\npersistence_location {data}/\n"


class BridgedMosquittos:
    """A central broker and a site broker whose bridge carries ``manta/#`` both ways."""

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str | None = None,
        central_config: Path = CENTRAL_CONFIG,
        site_config: Path = SITE_CONFIG,
    ) -> None:
        central_port, site_port = free_port(), free_port()
        central_dir, site_dir = workdir / "central", workdir / "site"
        self.central = MosquittoProcess(
            central_dir,
            binary=binary,
            config=render(central_config, port=central_port, data=central_dir / "data"),
            ports=[central_port],
        )
        self.site = MosquittoProcess(
            site_dir,
            binary=binary,
            config=render(site_config, port=site_port, data=site_dir / "data", central_port=central_port),
            ports=[site_port],
        )

    @property
    def central_url(self) -> str:
        return self.central.url

    @property
    def site_url(self) -> str:
        return self.site.url

    def start(self, timeout: float = 30.0) -> BridgedMosquittos:
        """Start both (the central broker first) and wait until the bridge carries messages both ways."""
        self.central.start()
        try:
            self.site.start()
            self.wait_bridged(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_bridged(self, timeout: float = 30.0) -> float:
        """Until a message published on the site reaches the central broker, and one published there
        reaches the site; the seconds it took. TimeoutError (with both brokers' logs) if not in time."""
        began = time.monotonic()
        token = secrets.token_hex(6)
        self._cross("up", self.site, self.central, token, began + timeout)
        self._cross("down", self.central, self.site, token, began + timeout)
        return time.monotonic() - began

    def _cross(
        self, direction: str, source: MosquittoProcess, target: MosquittoProcess, token: str, deadline: float
    ) -> None:
        """Publish on ``source`` (QoS 1, again every 0.25 s) until a subscriber at ``target`` receives it."""
        topic = f"{PROBE_ROOT}/{token}/{direction}"
        received = threading.Event()
        sub = MqttLink(f"probe-{direction}-{token}", BrokerAddress.parse(target.url), version="5", session_expiry=0)
        pub = MqttLink(f"probe-{direction}-pub-{token}", BrokerAddress.parse(source.url), version="5", session_expiry=0)
        sub.route(topic, lambda _topic, _payload, _retained: received.set())
        try:
            if not (sub.start(max(0.1, deadline - time.monotonic())) and sub.subscribe(topic, qos=1, wait=5.0)):
                raise TimeoutError(f"cannot subscribe at {target.url}: {sub.failure_line}")
            if not pub.start(max(0.1, deadline - time.monotonic())):
                raise TimeoutError(f"cannot connect to {source.url}: {pub.failure_line}")
            while not received.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no message crossed the bridge {direction} in time\n{self.logs()}")
                pub.publish(topic, b"probe", qos=1)
                received.wait(0.25)
        finally:
            pub.stop()
            sub.stop()

    def logs(self) -> str:
        """Both brokers' logs, for an error message."""
        parts = []
        for name, server in (("central", self.central), ("site", self.site)):
            text = server.log.read_text(errors="replace") if server.log.exists() else ""
            parts.append(f"--- {name} broker log ({server.log}):\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the site broker, then the central one."""
        self.site.stop()
        self.central.stop()

    def __enter__(self) -> BridgedMosquittos:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run broker_config/bridge/ (central + site) on free loopback ports.")
    parser.add_argument("workdir", type=Path, help="a folder for both brokers' configs, logs and data")
    args = parser.parse_args(argv)
    with BridgedMosquittos(args.workdir) as pair:
        took = pair.wait_bridged()
        print(f"central {pair.central_url}\nsite    {pair.site_url}\nbridged: a round trip took {took:.2f} s")
        print(f"logs: {pair.central.log} {pair.site.log}\nCtrl-C (or SIGTERM) stops both", flush=True)
        with stop_on_signals() as stop:
            stop.wait()


if __name__ == "__main__":
    main()
