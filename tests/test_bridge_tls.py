"""The production bridge (broker_config/bridge/site-tls.conf and central.acl) between two real sites.

Two sites made by ``manta-mqtt site init``, each broker running its bundle as Debian loads it
(site_broker(): only ports and paths change). The kitchen's broker gets the bridge as
conf.d/bridge.conf, with a certificate from the central site's operators' CA; the central's ACL
gets the bridge's block. Then a node of the kitchen, with its own certificate on the kitchen's
fleet port, and the coordinator, with its own on the central's operators' port, talk through the
bridge: the ACLs of both brokers, the bridge's TLS and its host name check all in the way.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from manta_mqtt.protocol import topics
from manta_mqtt.tools.bridge import BRIDGE_DIR, SITE_CONFIG
from manta_mqtt.tools.mosquitto import site_broker
from manta_mqtt.tools.pki import Identity, issue
from manta_mqtt.tools.site import Site
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from manta_mqtt.transport.tls import TlsFiles

from .conftest import mosquitto_binary

SITE_TLS = BRIDGE_DIR / "site-tls.conf"
CENTRAL_ACL = BRIDGE_DIR / "central.acl"
TLS_ONLY = ("address", "bridge_cafile", "bridge_certfile", "bridge_keyfile", "remote_clientid")


def bridge_options(config: Path) -> dict[str, str]:
    """The options of the bridge section (from ``connection`` on), comments left out."""
    section = config.read_text().split("\nconnection ", 1)[1]
    lines = [line.split(None, 1) for line in ("connection " + section).splitlines()]
    return {words[0]: words[1] if len(words) > 1 else "" for words in lines if words and not words[0].startswith("#")}


def test_the_production_bridge_has_the_tested_bridges_options() -> None:
    tested, production = bridge_options(SITE_CONFIG), bridge_options(SITE_TLS)
    assert {k: v for k, v in production.items() if k not in TLS_ONLY} == {
        k: v for k, v in tested.items() if k not in TLS_ONLY
    }
    bridge_id, acl = production["remote_clientid"], CENTRAL_ACL.read_text()
    assert f"\nuser {bridge_id}\n" in acl and f"\ntopic write $SYS/broker/connection/{bridge_id}/state\n" in acl


class SiteBroker:
    """A site made by Site.init, its bundle in ``etc`` (standing for /etc/mosquitto/)."""

    def __init__(self, tmp: Path, name: str, node: str) -> None:
        self.site, _ = Site.init(tmp / f"{name}-site", ["localhost", "127.0.0.1"])
        self.site.add_node(node)
        self.etc = tmp / f"{name}-etc"
        shutil.copytree(self.site.bundle, self.etc)
        snippet = (self.etc / "conf.d" / "manta.conf").read_text()  # rendered to free ports, not started
        self.server, self.ports = site_broker(
            tmp / f"{name}-mosquitto", self.etc, binary=mosquitto_binary(), snippet=snippet
        )

    def start(self) -> SiteBroker:
        self.server.start()
        return self

    def link(self, client_id: str, kit: Path, name: str, port: int) -> MqttLink:
        files = TlsFiles(kit / "ca.crt", kit / f"{name}.crt", kit / f"{name}.key")
        address = BrokerAddress.parse(f"mqtts://127.0.0.1:{self.ports[port]}").with_tls(files)
        link = MqttLink(client_id, address, version="5", session_expiry=0)
        return link

    def stop(self) -> None:
        self.server.stop()


def install_bridge(kitchen: SiteBroker, central: SiteBroker) -> str:
    """The steps of docs/deploy.md: the certificate, the ACL block, conf.d/bridge.conf. Its client id."""
    config = SITE_TLS.read_text()
    client_id = re.search(r"^remote_clientid (\S+)$", config, re.M).group(1)  # type: ignore[union-attr]
    root = central.site.root
    operators = Identity.load(root / "ca" / "operators-ca.key", root / "ca" / "operators-ca.crt")
    bridge = issue(operators, client_id)
    folder = kitchen.etc / "bridge"
    folder.mkdir()
    shutil.copy(root / "ca" / "ca.crt", folder / "central-ca.crt")
    (folder / f"{client_id}.crt").write_bytes(bridge.cert_pem())
    (folder / f"{client_id}.key").write_bytes(bridge.key_pem())
    with (central.etc / "manta.acl").open("a") as acl:
        acl.write("\n" + CENTRAL_ACL.read_text())
    config, count = re.subn(
        r"^address central\.example\.org:8884$", f"address localhost:{central.ports[8884]}", config, flags=re.M
    )
    assert count == 1
    (kitchen.etc / "conf.d" / "bridge.conf").write_text(config.replace("/etc/mosquitto/", f"{kitchen.etc}/"))
    return client_id


class Inbox:
    """What a link received: (topic, payload, retained), waited for."""

    def __init__(self, link: MqttLink) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.changed = threading.Event()
        link.route("$SYS/#", self.record)  # "#" matches no $SYS topic
        link.route("#", self.record)

    def record(self, topic: str, payload: bytes, retained: bool) -> None:
        self.got.append((topic, payload, retained))
        self.changed.set()

    def wait_for(
        self, message: tuple[str, bytes, bool], timeout: float, resend: Callable[[], None] = lambda: None
    ) -> bool:
        deadline = time.monotonic() + timeout
        while message not in self.got and time.monotonic() < deadline:
            resend()
            self.changed.clear()
            self.changed.wait(0.5)
        return message in self.got


@pytest.mark.mosquitto
def test_the_tls_bridge_carries_a_sites_node_to_the_central_coordinator(tmp_path: Path) -> None:
    central = SiteBroker(tmp_path, "central", "pi-central")
    kitchen = SiteBroker(tmp_path, "kitchen", "pi-kitchen")
    bridge_id = install_bridge(kitchen, central)
    coordinator = central.link("coordinator-s1", central.site.root / "coordinator", "coordinator", 8884)
    monitor = central.link("nodes-check", central.site.root / "monitor", "monitor", 8884)
    node = kitchen.link("pi-kitchen", kitchen.site.kit("pi-kitchen"), "pi-kitchen", 8883)
    at_coordinator, at_monitor, at_node = Inbox(coordinator), Inbox(monitor), Inbox(node)
    status = (topics.node_status("pi-kitchen"), b"online")
    assignment = (topics.assignment("s1", "pi-kitchen"), b"an assignment")
    result = (topics.results("s1", "pi-kitchen"), b"a result")
    try:
        central.start()
        kitchen.start()
        assert node.start(), node.failure_line
        assert coordinator.start(), coordinator.failure_line
        assert node.subscribe(topics.my_assignments("pi-kitchen"), wait=5.0)
        assert coordinator.subscribe([topics.all_node_status(), topics.swarm_results("s1")], wait=5.0)

        node.publish(*status, retain=True)  # queued by the kitchen's broker until the bridge is up
        assert at_coordinator.wait_for((*status, False), 30), central.server.log.read_text()
        assert at_node.wait_for((*assignment, False), 15, lambda: coordinator.publish(*assignment))
        node.publish(*result)
        assert at_coordinator.wait_for((*result, False), 10), at_coordinator.got
        assert monitor.start(), monitor.failure_line  # and the status is retained on the central broker
        assert monitor.subscribe(topics.all_node_status(), wait=5.0)
        assert at_monitor.wait_for((*status, True), 5), at_monitor.got
        assert {t for t, _, _ in at_node.got} == {assignment[0]}
        assert re.search(rf"New bridge connected .* as {bridge_id} .*u'{bridge_id}'", central.server.log.read_text())
        assert monitor.subscribe(f"$SYS/broker/connection/{bridge_id}/state", wait=5.0)
        assert at_monitor.wait_for((f"$SYS/broker/connection/{bridge_id}/state", b"1", True), 5), at_monitor.got
    finally:
        for link in (node, coordinator, monitor):
            link.stop()
        kitchen.stop()
        central.stop()
