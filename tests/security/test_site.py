"""A site secured with `manta-mqtt site` alone, on a real Mosquitto running the bundle it wrote.

The bundle is installed the way the commands print it (each `sudo install` line, run with /etc/
mosquitto/ standing for a test folder), and run as Debian loads it (site_broker(): only ports and
paths change). Nodes start from copies of their kits, as a Pi would hold them, with only the
broker's port overridden; the coordinator uses its kit and the site's owner key. Removing and
re-keying a node then refuses its old certificate, after exactly the restart the commands print.
"""

from __future__ import annotations

import datetime
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from manta_mqtt.cli.main import cli
from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools.mosquitto import MosquittoProcess, site_broker
from manta_mqtt.tools.pki import Identity
from manta_mqtt.tools.processes import stop_process
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from manta_mqtt.transport.tls import TlsFiles

from ..conftest import ROOT, mosquitto_binary
from ..test_e2e_swarm import COUNTER, check_counter_results, numbers

NODES = ["pi-garage", "pi-kitchen"]


def site_cli(root: Path, *args: str) -> str:
    """``manta-mqtt site ARGS --site ROOT``; its output (it must succeed)."""
    result = CliRunner().invoke(cli, ["site", *args, "--site", str(root)])
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class Broker:
    root: Path  # the site folder
    etc: Path  # stands for /etc/mosquitto/
    server: MosquittoProcess | None = None
    ports: dict[int, int] = field(default_factory=dict)  # shipped port -> test port

    def apply(self, output: str) -> None:
        """Run the broker steps a command printed: its `sudo install` lines, then its restart or reload."""
        actions = []
        for line in output.splitlines():
            if not line.startswith("  sudo "):
                continue
            words = shlex.split(line.split("#")[0])[1:]
            if words[0] == "systemctl":
                actions.append(words[1])
            elif words[:2] == ["install", "-d"]:  # install -d -m 750 -o root -g mosquitto DIR...
                for folder in words[8:]:
                    Path(folder.replace("/etc/mosquitto", str(self.etc))).mkdir(exist_ok=True)
            elif words[0] == "install":  # install -m MODE [-g GROUP] FILE... DEST
                mode, rest = int(words[2], 8), words[3:]
                *files, dest = rest[2:] if rest[0] == "-g" else rest
                for name in files:
                    target = Path(dest.replace("/etc/mosquitto", str(self.etc))) / Path(name).name
                    shutil.copy(self.root / "broker" / name, target)
                    os.chmod(target, mode)
        assert actions in (["restart"], ["reload"]), f"the printed steps end with {actions}"
        if self.server is not None:
            self.server.reload() if actions == ["reload"] else (self.server.stop(), self.server.start())

    def address(self, shipped_port: int, files: TlsFiles) -> BrokerAddress:
        return BrokerAddress.parse(f"mqtts://127.0.0.1:{self.ports[shipped_port]}").with_tls(files)

    def link(self, kit: Path, name: str, client_id: str = "") -> MqttLink:
        """A connection with the kit's certificate (``name``.crt) to the port that trusts it."""
        files = TlsFiles(kit / "ca.crt", kit / f"{name}.crt", kit / f"{name}.key")
        port = 8884 if name in ("coordinator", "monitor") else 8883
        return MqttLink(client_id or name, self.address(port, files), version="5", session_expiry=0)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A site with two nodes, its bundle installed as the commands print it, running."""
    binary = mosquitto_binary()
    site = Broker(tmp_path / "manta-site", tmp_path / "etc")
    (site.etc / "conf.d").mkdir(parents=True)  # what `apt install mosquitto` made
    site.apply(site_cli(site.root, "init", "--broker-name", "localhost", "--broker-name", "127.0.0.1"))
    for node in NODES:
        site.apply(site_cli(site.root, "add-node", node))
    snippet = (site.etc / "conf.d" / "manta.conf").read_text()
    site.server, site.ports = site_broker(tmp_path / "mosquitto", site.etc, binary=binary, snippet=snippet)
    site.server.start()
    try:
        yield site
    finally:
        site.server.stop()


class KitNode:
    """``edge-node start --config <kit>/node.toml`` from a copy of the kit (a Pi's home), the port overridden."""

    def __init__(self, site: Broker, node_id: str, data: Path) -> None:
        self.home = site.root.parent / "pi" / node_id
        self.kit = self.home / "manta"
        shutil.copytree(site.root / "nodes" / node_id, self.kit)  # rsync -a
        with (self.kit / "node.toml").open("a") as config:  # [datasets] is the file's last table
            config.write(f'"numbers.npy" = "{data}"\n')
        self.url = f"mqtts://127.0.0.1:{site.ports[8883]}"
        self.log = self.home / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KitNode:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_node.cli", "start", "--config", str(self.kit / "node.toml"),
                 "--broker", self.url, "--mqtt-version", "5", "-v"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "HOME": str(self.home), "OMP_NUM_THREADS": "1"},
            )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def refused(link: MqttLink) -> str:
    assert link.start(timeout=5) is False, "the broker let this certificate in"
    return link.failure


def connects(link: MqttLink) -> bool:
    ok = link.start(timeout=5)
    link.stop()
    return ok


def test_a_swarm_runs_exactly_from_the_site_kits(broker: Broker, tmp_path: Path) -> None:
    data = numbers(tmp_path)
    nodes = [KitNode(broker, n, data).start() for n in NODES]
    kit = broker.root / "coordinator"
    files = TlsFiles(kit / "ca.crt", kit / "coordinator.crt", kit / "coordinator.key")
    options = CoordinatorOptions(runs_dir=tmp_path / "runs", min_nodes=2, wait_nodes=30, mqtt_version="5",
                                 signing_key=broker.root / "owner.key")  # fmt: skip
    try:
        summary = Coordinator(load_swarm(COUNTER), broker.address(8884, files), options, ConsoleProgress()).run()
    finally:
        for node in nodes:
            node.stop()
    assert summary.state == "stopped", summary.reason
    check_counter_results(RunStore.open(summary.store_path), NODES, 3)
    log = broker.server.log.read_text()
    assert all(f"u'{n}')" in log for n in NODES) and "Warning: Unable" not in log
    password = (broker.root / "monitor" / "local.password").read_text().strip()  # tools on the broker itself
    local = BrokerAddress.parse(f"mqtt://127.0.0.1:{broker.ports[1883]}").with_credentials("monitor", password)
    assert connects(MqttLink("monitor-local", local, version="5", session_expiry=0))


def test_the_monitor_kit_is_a_profile(broker: Broker, tmp_path: Path) -> None:
    """From inside the monitor's kit, `manta-mqtt nodes` needs nothing but the test's port."""
    kit = broker.root / "monitor"
    assert 'url = "mqtts://localhost:8884"' in (kit / "manta.toml").read_text()
    node = KitNode(broker, "pi-kitchen", numbers(tmp_path)).start()
    command = [
        sys.executable,
        "-m",
        "manta_mqtt.cli.main",
        "nodes",
        "--broker",
        f"mqtts://localhost:{broker.ports[8884]}",
    ]

    def listed() -> bool:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=kit)
        assert result.returncode == 0, result.stderr
        return "pi-kitchen" in result.stdout and "online" in result.stdout

    try:
        assert until(listed, timeout=30)
    finally:
        node.stop()


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_removed_node_is_refused_after_the_printed_restart(broker: Broker, tmp_path: Path) -> None:
    """A reload refuses the certificate at its next connection only; the printed restart closes its connection."""
    site_cli(broker.root, "add-node", "pi-probe")  # a certificate nobody holds: it shows when a reload is done
    pis = {n: tmp_path / n for n in ("pi-garage", "pi-probe")}
    for node, pi in pis.items():
        shutil.copytree(broker.root / "nodes" / node, pi)  # what the Pi still holds
    held = broker.link(pis["pi-garage"], "pi-garage")
    assert held.start(timeout=5)
    try:
        site_cli(broker.root, "remove-node", "pi-probe")
        printed = site_cli(broker.root, "remove-node", "pi-garage")
        assert "systemctl restart mosquitto" in printed and not (broker.root / "nodes" / "pi-garage").exists()
        broker.apply(printed.replace("systemctl restart", "systemctl reload"))
        assert until(lambda: not connects(broker.link(pis["pi-probe"], "pi-probe"))), "the reload never applied"
        assert "user pi-garage" not in (broker.etc / "manta.acl").read_text()
        assert "refused our certificate" in refused(broker.link(pis["pi-garage"], "pi-garage"))
        seen: list[bytes] = []  # the held connection is still open, and still publishes its status
        watcher = broker.link(broker.root / "monitor", "monitor")
        watcher.route("#", lambda topic, payload, retained: seen.append(payload))
        assert watcher.start(timeout=5) and watcher.subscribe(topics.node_status("pi-garage"), wait=5)
        held.publish(topics.node_status("pi-garage"), b"still here")
        assert until(lambda: b"still here" in seen), "the reload closed the held connection"
        watcher.stop()
        broker.apply(printed)  # the restart the command printed closes it
        held._paho.reconnect_delay_set(0.2, 1)
        assert until(lambda: not held.connected.is_set())
        assert "refused our certificate" in refused(broker.link(pis["pi-garage"], "pi-garage"))
        time.sleep(1.5)  # paho has tried to reconnect meanwhile, and was refused too
        assert not held.connected.is_set()
    finally:
        held.stop()
    assert connects(broker.link(broker.root / "nodes" / "pi-kitchen", "pi-kitchen"))
    assert connects(broker.link(broker.root / "monitor", "monitor"))


def test_a_rotated_node_old_certificate_is_refused_and_its_new_one_works(broker: Broker, tmp_path: Path) -> None:
    kit = broker.root / "nodes" / "pi-kitchen"
    node = KitNode(broker, "pi-kitchen", numbers(tmp_path)).start()  # the Pi, running on its old kit

    def connected() -> int:  # the broker's "New client connected ... as pi-kitchen (...)" lines
        assert broker.server is not None
        return broker.server.log.read_text().count("as pi-kitchen (")

    try:
        assert until(lambda: connected() == 1)
        old, config = node.kit, (kit / "node.toml").read_bytes()
        broker.apply(site_cli(broker.root, "rotate-node", "pi-kitchen"))
        assert (kit / "pi-kitchen.crt").read_bytes() != (old / "pi-kitchen.crt").read_bytes()
        assert (kit / "node.toml").read_bytes() == config  # kept: only the certificate and key change
        assert "refused our certificate" in refused(broker.link(old, "pi-kitchen", "probe"))
        node.stop()
        for name in ("pi-kitchen.crt", "pi-kitchen.key"):  # the printed scp, then the agent's restart
            shutil.copy(kit / name, node.kit / name)
        node.start()
        assert until(lambda: connected() == 2), node.log.read_text()[-2000:]
    finally:
        node.stop()
    assert connects(broker.link(kit, "pi-kitchen"))
    assert connects(broker.link(broker.root / "nodes" / "pi-garage", "pi-garage"))


def test_a_node_added_later_reads_the_swarms_after_the_printed_reload(broker: Broker) -> None:
    operator = broker.link(broker.root / "coordinator", "coordinator", "coordinator-late")
    assert operator.start(timeout=5)
    operator.publish(topics.swarm_state("s1"), b'{"state": "running"}', retain=True)
    assert operator.flush(5)
    operator.stop()
    printed = site_cli(broker.root, "add-node", "pi-late")
    assert "systemctl reload mosquitto" in printed  # an ACL change: no restart needed

    def reads_the_swarm_state() -> bool:
        seen: list[str] = []
        link = broker.link(broker.root / "nodes" / "pi-late", "pi-late")
        link.route("#", lambda topic, payload, retained: seen.append(topic))
        assert link.start(timeout=5)  # the site CA signed it: the broker lets it in at once
        link.subscribe("manta/v2/swarms/+/state", wait=5)
        until(lambda: bool(seen), timeout=0.5)
        link.stop()
        return seen == [topics.swarm_state("s1")]

    assert not reads_the_swarm_state()  # not enrolled yet: the ACL hides the swarms' shared data
    broker.apply(printed)
    assert until(reads_the_swarm_state)


def test_an_expired_crl_locks_every_node_out(broker: Broker) -> None:
    """Why the site's CRL is valid as long as its CA: past its next update, no node gets in."""
    ca = Identity.load(broker.root / "ca" / "ca.key", broker.root / "ca" / "ca.crt")
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - datetime.timedelta(days=2))
        .next_update(now - datetime.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    (broker.etc / "ca" / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    assert broker.server is not None
    broker.server.stop()
    broker.server.start()
    assert "refused our certificate" in refused(broker.link(broker.root / "nodes" / "pi-kitchen", "pi-kitchen"))
    assert connects(broker.link(broker.root / "monitor", "monitor"))  # port 8884 has no CRL
