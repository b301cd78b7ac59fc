"""RabbitMQ nodes of our own (one, or a cluster) with the MQTT plugin, for tests.

Groundwork for running the project on clustered brokers. The system RabbitMQ (ports 5672, 1883,
25672, the default epmd on 4369, /var/lib/rabbitmq and its cookie) is never touched: each node
gets free loopback ports, its files and an Erlang cookie of its own in the workdir (``HOME``),
the system's rabbitmq-env.conf / rabbitmq.conf / conf.d are replaced by ours, and our nodes
register with an epmd we start on a free port (``ERL_EPMD_PORT``) and stop again. Debian's
/usr/sbin/rabbitmq-server is a wrapper that ``su``s to the rabbitmq user: we run the real script.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .mosquitto import free_port, wait_for_port
from .nats import wait_for_mqtt
from .processes import stop_process

#: The real scripts (not Debian's su wrapper in /usr/sbin).
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def find_rabbitmq_server() -> str | None:
    if (RABBIT_BIN / "rabbitmq-server").exists():
        return str(RABBIT_BIN / "rabbitmq-server")
    found = shutil.which("rabbitmq-server")
    if found is None or "script-wrapper" in str(Path(found).resolve()):
        return None  # only the su wrapper: it would run as user rabbitmq with the system's cookie
    return found


class Epmd:
    """An epmd of our own on a free loopback port: the nodes of one cluster must share it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Epmd:
        binary = shutil.which("epmd") or "epmd"
        self.proc = subprocess.Popen(
            [binary, "-port", str(self.port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=5.0, process=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def _config(amqp_port: int, mqtt_port: int, peers: list[str]) -> str:
    lines = [
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}",
        f"mqtt.listeners.tcp.1 = 127.0.0.1:{mqtt_port}",
        # anonymous MQTT clients become the guest user, whom RabbitMQ admits from loopback only
        "default_user = guest",
        "default_pass = guest",
        "loopback_users.guest = true",
        "mqtt.allow_anonymous = true",
        "mqtt.default_user = guest",
        "mqtt.default_pass = guest",
        "mqtt.vhost = /",
        "mqtt.exchange = amq.topic",
        "disk_free_limit.absolute = 50MB",
        "log.file.level = info",
    ]
    if peers:  # a fresh node that finds one of these running joins its cluster
        lines.append("cluster_formation.peer_discovery_backend = classic_config")
        lines += [f"cluster_formation.classic_config.nodes.{i + 1} = {peer}" for i, peer in enumerate(peers)]
    return "\n".join(lines) + "\n"


class RabbitNode:
    """One RabbitMQ node with rabbitmq_mqtt; ``epmd`` and ``cookie`` are shared by a cluster's nodes."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str | None = None,
        binary: str | None = None,
        epmd: Epmd | None = None,
        cookie: str | None = None,
        peers: list[str] | None = None,
    ) -> None:
        binary = binary or find_rabbitmq_server()
        if binary is None:
            raise FileNotFoundError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.binary = binary
        self.ctl = str(Path(binary).with_name("rabbitmqctl"))
        self.nodename = f"{name or 'manta-' + secrets.token_hex(4)}@localhost"
        self.workdir = workdir
        self.port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self._own_epmd = epmd is None
        self.epmd = epmd or Epmd()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "conf.d").mkdir(exist_ok=True)
        cookie_file = workdir / ".erlang.cookie"
        if not cookie_file.exists():
            cookie_file.write_text(cookie or secrets.token_hex(16))
            cookie_file.chmod(0o400)
        (workdir / "rabbitmq-env.conf").write_text("# ours, instead of /etc/rabbitmq/rabbitmq-env.conf\n")
        (workdir / "rabbitmq.conf").write_text(_config(self.port, self.mqtt_port, peers or []))
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.log = workdir / "log" / f"{self.nodename}.log"
        self.output = workdir / "server.out"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def env(self) -> dict[str, str]:
        """For rabbitmq-server and rabbitmqctl alike: our cookie (HOME), our epmd, our files."""
        ctl_min = free_port()
        return {
            **os.environ,
            "HOME": str(self.workdir),
            "ERL_EPMD_PORT": str(self.epmd.port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(ctl_min),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(min(ctl_min + 10, 65535)),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(self.workdir / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
        }

    def start(self, timeout: float = 90.0) -> RabbitNode:
        """Start, and return once a paho client completes an MQTT round trip (seconds: Erlang boots slowly)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.nodename} is already running")
        if self._own_epmd and self.epmd.proc is None:
            self.epmd.start()
        with self.output.open("ab") as out:
            # own session: a SIGKILL (kill()) reaches beam.smp and its helpers, not only the script
            self.proc = subprocess.Popen(
                [self.binary], env=self.env(), stdout=out, stderr=out, cwd=self.workdir, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        try:
            wait_for_port(self.mqtt_port, timeout=timeout, process=self.proc)
            wait_for_mqtt([self.url], max(5.0, deadline - time.monotonic()), describe=self.nodename)
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"RabbitMQ node {self.nodename} did not come up: {exc}\n{tail}") from None
        return self

    def ctl_run(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <this node> ARGS`` with our cookie and epmd; its output, or RuntimeError."""
        done = subprocess.run(
            [self.ctl, "-n", self.nodename, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        """SIGTERM to the script (which stops the node cleanly), then SIGKILL whatever is left of its session."""
        if self.proc is not None:
            stop_process(self.proc, timeout=30.0)
            self._kill_group()
            self.proc = None
        if self._own_epmd:
            self.epmd.stop()

    def kill(self) -> None:
        """SIGKILL the node: a crash, for failover tests (its data stays for a later :meth:`start`).

        Seen with 3.10.8 in a 2-node cluster: the node that leads the MQTT plugin's Raft group
        (``mqtt_node``, the first node) did not serve MQTT again within 45-90 s after a kill or
        a stop, its plugin stuck in ``ra:restart_server``; a non-leader came back in ~7 s."""
        if self.proc is not None:
            self._kill_group()
            self.proc.wait()
            self.proc = None

    def restart(self) -> RabbitNode:
        if self.proc is not None:
            stop_process(self.proc, timeout=30.0)
            self._kill_group()
            self.proc = None
        return self.start()

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.output, self.log):
            if path.exists():
                text += f"--- {path}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text or "(no log)"

    def __enter__(self) -> RabbitNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RabbitCluster:
    """``size`` nodes that form one cluster by classic-config peer discovery, sharing a cookie and an epmd."""

    def __init__(self, workdir: Path, size: int = 2, *, binary: str | None = None) -> None:
        self.epmd = Epmd()
        tag = secrets.token_hex(3)
        names = [f"manta-{tag}-{i + 1}" for i in range(size)]
        peers = [f"{name}@localhost" for name in names]
        cookie = secrets.token_hex(16)
        self.nodes = [
            RabbitNode(workdir / name, name=name, binary=binary, epmd=self.epmd, cookie=cookie, peers=peers)
            for name in names
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def servers(self) -> list[RabbitNode]:
        return self.nodes

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        """The first node, then the others one by one: each finds the running first node and joins it."""
        self.epmd.start()
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start(timeout=max(10.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def running_nodes(self) -> list[str]:
        """The cluster's running members as the first node sees them (a check that they joined)."""
        out = self.nodes[0].ctl_run("eval", "rabbit_nodes:all_running().")
        return sorted(part.strip(" '[]\n") for part in out.split(","))

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.epmd.stop()

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
