"""A site Mosquitto bridged to a central one (broker_config/bridge/), as BridgedMosquittos runs it.

What crosses, both ways and exactly once (no loop), retained or not; what the site queues while
the central broker restarts; and the counter swarm with its coordinator on the central broker and
its nodes split between the site and the central broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from manta_mqtt.protocol import topics
from manta_mqtt.tools.bridge import BridgedMosquittos
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .conftest import BrokerUnderTest, NodeProcess, mosquitto_binary
from .test_e2e_swarm import COUNTER, check_counter_run, numbers, run_swarm

pytestmark = pytest.mark.mosquitto

SHA = "ab" * 32


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[BridgedMosquittos]:
    with BridgedMosquittos(tmp_path / "brokers", binary=mosquitto_binary()) as pair:
        yield pair


class Listener:
    """An MQTT 5 client of one broker that records what it receives under topics.everything()."""

    def __init__(self, url: str, client_id: str, session_expiry: int = 0) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.link = MqttLink(client_id, BrokerAddress.parse(url), version="5", session_expiry=session_expiry)
        self.link.route("#", self._record)

    def _record(self, topic: str, payload: bytes, retained: bool) -> None:
        with self._cond:
            self.got.append((topic, payload, retained))
            self._cond.notify_all()

    def start(self) -> Listener:
        assert self.link.start(), self.link.failure_line
        assert self.link.subscribe(topics.everything(), qos=1, wait=5.0)
        return self

    def wait_for(self, ok: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ok(self.got) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return ok(self.got)

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._cond:
            return [(payload, retained) for t, payload, retained in self.got if t == topic]


def publisher(url: str, client_id: str) -> MqttLink:
    link = MqttLink(client_id, BrokerAddress.parse(url), version="5", session_expiry=0)
    assert link.start(), link.failure_line
    return link


def test_messages_and_retained_messages_cross_both_ways_exactly_once(bridged: BridgedMosquittos) -> None:
    up = {  # what a site's nodes publish: to the coordinator on the central broker
        topics.node_log("s1"): b"a warning",
        topics.results("swarm-1", "s1"): b"a result",
        topics.upload_chunk("swarm-1", "s1", SHA, 0): b"\x00" * 300_000,
    }
    down = {  # what the coordinator publishes: to the site's nodes
        topics.assignment("swarm-1", "s1"): b"an assignment",
        topics.upload_grant("swarm-1", "s1"): b"a grant",
        topics.blob_chunk("swarm-1", SHA, 0): b"\xff" * 300_000,
    }
    at_central = Listener(bridged.central_url, "central-listener").start()
    at_site = Listener(bridged.site_url, "site-listener").start()
    site_pub, central_pub = publisher(bridged.site_url, "site-pub"), publisher(bridged.central_url, "central-pub")
    try:
        site_pub.publish(topics.node_status("s1"), b"online", retain=True)
        central_pub.publish(topics.swarm_state("swarm-1"), b"running", retain=True)
        for topic, payload in up.items():
            site_pub.publish(topic, payload)
        for topic, payload in down.items():
            central_pub.publish(topic, payload)
        expected = {**up, **down, topics.node_status("s1"): b"online", topics.swarm_state("swarm-1"): b"running"}
        for listener in (at_central, at_site):
            assert listener.wait_for(lambda got: {t for t, _, _ in got} >= set(expected)), listener.got
        time.sleep(1.0)  # a loop would bring them back
        for listener in (at_central, at_site):
            for topic, payload in expected.items():
                assert listener.on(topic) == [(payload, False)], topic  # live: not flagged retained

        # Retained on the other side too: a client subscribing now gets them from its own broker.
        late_central = Listener(bridged.central_url, "late-central").start()
        late_site = Listener(bridged.site_url, "late-site").start()
        for late in (late_central, late_site):
            assert late.wait_for(lambda got: len(got) >= 2), late.got
            assert sorted(late.got) == sorted(
                [(topics.node_status("s1"), b"online", True), (topics.swarm_state("swarm-1"), b"running", True)]
            )
            late.link.stop()

        # Clearing a retained message crosses as well.
        site_pub.publish(topics.node_status("s1"), b"", retain=True)
        assert at_central.wait_for(lambda got: (topics.node_status("s1"), b"", False) in got)
        cleared = Listener(bridged.central_url, "cleared-central").start()
        assert not cleared.wait_for(lambda got: any(t == topics.node_status("s1") for t, _, _ in got), timeout=1.0)
        cleared.link.stop()
    finally:
        for link in (site_pub, central_pub, at_central.link, at_site.link):
            link.stop()


def test_the_bridge_survives_a_restart_of_the_central_broker(bridged: BridgedMosquittos) -> None:
    """What the site's nodes publish while the central broker is down reaches it when it is back."""
    coordinator = Listener(bridged.central_url, "coordinator-like", session_expiry=3600).start()
    site_pub = publisher(bridged.site_url, "site-pub")
    results = [topics.results("swarm-1", f"s{i}") for i in range(20)]
    try:
        bridged.central.stop()
        began = time.monotonic()
        site_pub.publish(topics.node_status("s1"), b"online", retain=True)
        for topic in results:
            site_pub.publish(topic, topic.encode())
        assert site_pub.flush(5.0)  # the site broker has them all
        bridged.central.start()
        assert coordinator.wait_for(lambda got: {t for t, _, _ in got} >= {*results, topics.node_status("s1")}, 60.0)
        print(f"central broker back: queued messages arrived {time.monotonic() - began:.1f} s after it stopped")
        for topic in results:
            assert coordinator.on(topic) == [(topic.encode(), False)]
        late = Listener(bridged.central_url, "late-central").start()  # retained on the central broker too
        assert late.wait_for(lambda got: (topics.node_status("s1"), b"online", True) in got)
        late.link.stop()
        assert bridged.wait_bridged(30.0) < 30.0  # and both ways again
    finally:
        site_pub.stop()
        coordinator.link.stop()


def test_a_site_offline_gets_what_the_central_broker_queued_for_it(bridged: BridgedMosquittos) -> None:
    """The bridge's session on the central broker (cleansession false) queues the site's traffic."""
    node = Listener(bridged.site_url, "node-like", session_expiry=3600).start()
    central_pub = publisher(bridged.central_url, "central-pub")
    assignments = [topics.assignment("swarm-1", f"s{i}") for i in range(20)]
    try:
        bridged.site.stop()
        began = time.monotonic()
        for topic in assignments:
            central_pub.publish(topic, topic.encode())
        assert central_pub.flush(5.0)
        bridged.site.start()
        assert node.wait_for(lambda got: {t for t, _, _ in got} >= set(assignments), 60.0)
        print(f"site broker back: queued messages arrived {time.monotonic() - began:.1f} s after it stopped")
        for topic in assignments:
            assert node.on(topic) == [(topic.encode(), False)]
    finally:
        central_pub.stop()
        node.link.stop()


def test_a_swarm_spans_the_site_and_the_central_broker(
    bridged: BridgedMosquittos,
    tmp_path: Path,
    start_nodes: Callable[[BrokerUnderTest, list[str], dict[str, Path]], list[NodeProcess]],
) -> None:
    """The coordinator on the central broker, two nodes on the site's, one on the central one."""
    central = BrokerUnderTest("central", bridged.central_url, "5", bridged.central.port)
    site = BrokerUnderTest("site", bridged.site_url, "5", bridged.site.port)
    data = {"numbers.npy": numbers(tmp_path)}
    start_nodes(site, ["site-a", "site-b"], data)
    start_nodes(central, ["central-a"], data)
    check_counter_run(run_swarm(COUNTER, central, tmp_path / "runs", 3), ["central-a", "site-a", "site-b"])
    site_log, central_log = bridged.site.log.read_text(), bridged.central.log.read_text()
    assert all(f" as {n} " in site_log and f" as {n} " not in central_log for n in ("site-a", "site-b"))
    assert " as central-a " in central_log and " as coordinator-" in central_log
