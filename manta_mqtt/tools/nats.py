"""NATS servers of our own (one, or a JetStream cluster) with their MQTT listener, for tests.

Groundwork for running the project on clustered brokers. Every port is a free loopback port and
every file lives in the caller's workdir: the system nats-server (port 4222, /var/lib/nats-server)
is never touched. nats-server 2.9 speaks MQTT 3.1.1 only, and only with JetStream and a
``server_name``; in a cluster, MQTT sessions work only once JetStream has a meta leader, so
readiness is a real MQTT round trip (:func:`mqtt_round_trip`), not an open port.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from .mosquitto import free_port, wait_for_port
from .processes import kill_process, stop_process


def find_nats_server() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None


def mqtt_round_trip(url: str, timeout: float = 5.0, topic: str = "manta-probe") -> None:
    """Connect, subscribe at QoS 1 and get back our own QoS 1 publish: the broker serves MQTT.

    A listening port is not enough: NATS refuses MQTT sessions until JetStream is up, and
    RabbitMQ accepts connections before its plugin can route. Raises on failure."""
    parts = urlsplit(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"probe-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    got = threading.Event()
    topic = f"{topic}/{uuid.uuid4().hex[:8]}"
    client.on_message = lambda _c, _u, _m: got.set()
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=10)
        client.loop_start()
        deadline = time.monotonic() + timeout
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: no CONNACK")
            time.sleep(0.02)
        result, _mid = client.subscribe(topic, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"{url}: subscribe failed ({result})")
        client.publish(topic, b"probe", qos=1)
        if not got.wait(max(0.1, deadline - time.monotonic())):
            raise TimeoutError(f"{url}: our own publish did not come back")
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_mqtt(urls: Iterable[str], timeout: float, describe: str) -> None:
    """Retry :func:`mqtt_round_trip` on each url until all pass or ``timeout``; the last error says why."""
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                mqtt_round_trip(url, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{describe}: {url} not serving MQTT after {timeout:.0f}s: {exc}") from None
                time.sleep(0.2)


class NatsServer:
    """One nats-server with JetStream and MQTT; ``routes`` (cluster ports of peers) make it a cluster member."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "n1",
        binary: str | None = None,
        cluster_port: int | None = None,
        routes: Iterable[int] = (),
        cluster_name: str = "manta",
        replicas: int = 1,
    ) -> None:
        """``replicas``: of the MQTT streams; a 3-member cluster wants 3, so that one member down keeps a quorum."""
        binary = binary or find_nats_server()
        if binary is None:
            raise FileNotFoundError("nats-server is not installed (apt-get install nats-server)")
        self.binary = binary
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.mqtt_port = free_port()
        self.http_port = free_port()  # monitoring: /healthz says when JetStream is up
        self.cluster_port = cluster_port
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nats.conf"
        self.log = workdir / "nats.log"
        cluster = ""
        if cluster_port is not None:
            peers = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes if p != cluster_port)
            cluster = (
                f"cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{peers}]\n}}\n"
            )
        self.conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f"server_name: {name}\n"
            f'jetstream {{\n  store_dir: "{workdir / "jetstream"}"\n}}\n'
            f"mqtt {{\n  listen: 127.0.0.1:{self.mqtt_port}\n  stream_replicas: {replicas}\n}}\n" + cluster
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start and wait for the MQTT port (not for JetStream: see :func:`wait_for_mqtt`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"nats-server {self.name} is already running")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_for_port(self.mqtt_port, timeout=timeout, process=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"nats-server -c {self.conf}: {exc}:\n{tail}") from None
        return self

    def healthy(self) -> bool:
        """/healthz answers 200 once this server's JetStream (and, clustered, the meta leader) is up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as reply:
                return int(reply.status) == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, for failover tests (JetStream state stays on disk for :meth:`restart`)."""
        if self.proc is not None:
            kill_process(self.proc)
            self.proc = None

    def restart(self) -> NatsServer:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> NatsServer:
        self.start()
        try:
            wait_for_mqtt([self.url], timeout=20.0, describe=f"nats-server {self.name}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsCluster:
    """``size`` nats-servers routed to each other, JetStream clustered: each member serves MQTT."""

    def __init__(self, workdir: Path, size: int = 3, *, binary: str | None = None) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.servers = [
            NatsServer(
                workdir / f"n{i + 1}",
                name=f"n{i + 1}",
                binary=binary,
                cluster_port=port,
                routes=cluster_ports,
                replicas=min(size, 3),
            )
            for i, port in enumerate(cluster_ports)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start all, then wait until each member completes an MQTT round trip (a meta leader exists)."""
        try:
            for server in self.servers:
                server.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        running = [s for s in self.servers if s.proc is not None]
        # MQTT connects before the meta leader exists stall in 4 s JetStream API timeouts: wait for /healthz first
        deadline = time.monotonic() + timeout
        while not all(s.healthy() for s in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            wait_for_mqtt([s.url for s in running], max(1.0, deadline - time.monotonic()), describe="NATS cluster")
        except TimeoutError as exc:
            tails = "\n".join(f"--- {s.name}:\n{s.log_tail(10)}" for s in running)
            raise TimeoutError(f"{exc}\n{tails}") from None

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
