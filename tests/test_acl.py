"""The broker ACL shipped in broker_config/manta.acl, on a real Mosquitto with passwords: a node
(username = node id) cannot speak for another node, cannot read another node's assignments,
and a swarm still runs exactly. This is what makes a well-formed forgery impossible.

The nodes are enrolled as broker_config/README.md says (a block per node appended to the ACL);
tests/security/test_identity.py runs the same attack with certificates on the site config."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus, ResultEnvelope
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools.mosquitto import SITE_ACL, MosquittoProcess, node_acl
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .conftest import SIGNING_KEY, BrokerUnderTest, NodeProcess, mosquitto_binary
from .test_e2e_swarm import COUNTER, check_counter_results

USERS = {"coordinator": "c-secret", "monitor": "m-secret", "n1": "n1-secret", "n2": "n2-secret"}


@pytest.fixture
def secured(tmp_path: Path):  # type: ignore[no-untyped-def]
    binary = mosquitto_binary()
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    password_file = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run([passwd, *flags, "-b", str(password_file), user, password], check=True)
    acl = tmp_path / "manta.acl"
    acl.write_text(SITE_ACL.read_text() + node_acl(["n1", "n2"]))
    extra = f"allow_anonymous false\npassword_file {password_file}\nacl_file {acl}\n"
    server = MosquittoProcess(tmp_path / "mosquitto", extra=extra, binary=binary).start()
    yield server
    server.stop()


def url(server: MosquittoProcess, user: str) -> str:
    return f"mqtt://{user}:{USERS[user]}@127.0.0.1:{server.port}"


def test_acl_confines_each_node_to_its_own_topics(secured: MosquittoProcess, tmp_path: Path) -> None:
    anonymous = MqttLink("anon", BrokerAddress.parse(secured.url), version="5", session_expiry=0)
    assert anonymous.start(timeout=3) is False  # no password, no entry

    numbers = tmp_path / "numbers.npy"
    np.save(numbers, np.arange(10))
    broker = BrokerUnderTest("mosquitto", secured.url, "5", secured.port)
    nodes = [
        NodeProcess(tmp_path / "nodes", n, broker, {"numbers.npy": numbers}, password=USERS[n]).start()
        for n in ("n1", "n2")
    ]
    # n1's credentials, trying to act as n2 and to read n2's work
    evil = MqttLink("n1-evil", BrokerAddress.parse(url(secured, "n1")), version="5", session_expiry=0)
    stolen: list[str] = []
    evil.route("#", lambda t, p, r: stolen.append(t))
    assert evil.start()
    evil.subscribe(topics.my_assignments("n2"))
    try:
        swarm = load_swarm(COUNTER)
        options = CoordinatorOptions(
            runs_dir=tmp_path / "runs", min_nodes=2, wait_nodes=30, mqtt_version="5", signing_key=SIGNING_KEY
        )
        coordinator = Coordinator(swarm, BrokerAddress.parse(url(secured, "coordinator")), options, ConsoleProgress())
        forged = ResultEnvelope(coordinator.swarm_id, 0, "worker", "n2", 0, "ok", {"val": b"\x01"})
        offline = NodeStatus("n2", "offline", ["numbers.npy"])

        done = threading.Event()

        def forge() -> None:  # all through the run: each would be accepted without the ACL
            while not done.is_set():
                evil.publish(topics.results(coordinator.swarm_id, "n2"), forged.to_bytes())
                evil.publish(topics.node_status("n2"), offline.to_bytes(), retain=True)
                time.sleep(0.05)

        vandal = threading.Thread(target=forge)
        vandal.start()
        try:
            summary = coordinator.run()
        finally:
            done.set()
            vandal.join()
    finally:
        evil.stop()
        for node in nodes:
            node.stop()
    assert summary.state == "stopped", summary.reason
    assert summary.rejected == {}  # the broker dropped the forgeries: none reached the coordinator
    check_counter_results(RunStore.open(summary.store_path), ["n1", "n2"], 3)
    assert stolen == []  # n1 could not read n2's assignments


def link(server: MosquittoProcess, user: str, seen: list[str] | None = None) -> MqttLink:
    """A connected client as ``user``; what it receives goes to ``seen``."""
    client = MqttLink(f"{user}-probe", BrokerAddress.parse(url(server, user)), version="5", session_expiry=0)
    if seen is not None:
        for topic_filter in ("#", "$SYS/#"):  # '#' matches no topic starting with '$'
            client.route(topic_filter, lambda t, p, r: seen.append(t))
    assert client.start(timeout=5)
    return client


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_operators_steer_swarms_nodes_only_log_as_themselves(secured: MosquittoProcess) -> None:
    """Both operators may stop a swarm (its control topic) and read the nodes' logs and $SYS; a node
    writes its own log and nothing on a control topic, nor another node's log."""
    coordinator_saw: list[str] = []
    monitor_saw: list[str] = []
    coordinator = link(secured, "coordinator", coordinator_saw)
    monitor = link(secured, "monitor", monitor_saw)
    n1, n2 = link(secured, "n1"), link(secured, "n2")
    try:
        for operator in (coordinator, monitor):
            assert operator.subscribe(
                ["manta/v2/swarms/+/control", topics.all_node_logs(), "$SYS/broker/version"], wait=5
            )
        # a node's forgeries first, then its own log line: the broker keeps one publisher's order
        n1.publish(topics.swarm_control("s1"), b'{"stop": "n1"}')
        n1.publish(topics.node_log("n2"), b"n1 speaking for n2")
        n2.publish(topics.swarm_control("s2"), b'{"stop": "n2"}')
        n1.publish(topics.node_log("n1"), b"n1's own log")
        n2.publish(topics.node_log("n2"), b"n2's own log")
        monitor.publish(topics.swarm_control("s3"), b'{"stop": "monitor"}')
        coordinator.publish(topics.swarm_control("s4"), b'{"stop": "coordinator"}')
        expected = {topics.node_log("n1"), topics.node_log("n2"), topics.swarm_control("s3"),
                    topics.swarm_control("s4"), "$SYS/broker/version"}  # fmt: skip
        for saw in (coordinator_saw, monitor_saw):
            assert until(lambda: expected <= set(saw)), saw  # noqa: B023 (called at once)
        for saw in (coordinator_saw, monitor_saw):
            assert sorted(set(saw)) == sorted(expected)  # nothing of the nodes' forgeries
            assert saw.count(topics.node_log("n2")) == 1  # n2's own line only, not n1's
    finally:
        for client in (coordinator, monitor, n1, n2):
            client.stop()
