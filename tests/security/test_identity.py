"""Identities on the site broker: a certificate's CN is the node's name and its client id.

The attack found in review: n1's credentials connecting with client id ``n2`` took over n2's
session, and a client using the coordinator's client id kicked the coordinator again and again.
On the site config (mosquitto-pi.conf) the fleet listener replaces whatever client id a node
sends by its certificate's CN, and operators connect on a port that refuses node certificates:
both attacks run during a whole swarm, and the swarm finishes exactly, nobody kicked. The ACL
still confines the attacker's identity to its own topics.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus, ResultEnvelope
from manta_mqtt.tools.watch import watch
from manta_mqtt.transport.mqtt import MqttLink

from ..test_e2e_swarm import check_counter_results, numbers
from .test_tls import ENROLLED, Site, coordinator, site, tls_node

__all__ = ["site"]  # the fixture


class Attack:
    """Connects again and again with a victim's client id, while publishing as the victim."""

    def __init__(self, site: Site, identity: str, victim_ids: list[str], forge: list[tuple[str, bytes]]) -> None:
        self.files = site.pki.files(identity)
        self.site, self.victim_ids, self.forge = site, victim_ids, forge
        self.accepted = 0
        self.stolen: list[str] = []
        self.first = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.done.is_set():
            for victim in self.victim_ids:
                link = MqttLink(victim, self.site.address(self.site.nodes, self.files), version="5", session_expiry=0)
                link.route("#", lambda t, p, r: self.stolen.append(t))
                if link.start(timeout=5):
                    self.accepted += 1
                    self.first.set()
                    link.subscribe(
                        ["manta/v2/swarms/+/assign/n2", "manta/v2/swarms/+/blobs/#", "manta/v2/swarms/+/state"]
                    )
                    for topic, payload in self.forge:
                        link.publish(topic, payload, retain=topic.endswith("/status"))
                    time.sleep(0.2)
                    link.stop()

    def __enter__(self) -> Attack:
        self.thread.start()
        assert self.first.wait(10), "the attacker's certificate was refused: nothing was tested"
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def test_no_identity_can_take_over_a_node_or_the_coordinator(site: Site, tmp_path: Path) -> None:
    data = numbers(tmp_path)
    victims = [tls_node(tmp_path, site, n, data).start() for n in ("n2", "n3")]
    run = coordinator(site, tmp_path)
    swarm = run.swarm_id
    forged = ResultEnvelope(swarm, 0, "worker", "n2", 0, "ok", {"val": b"\x01"}).to_bytes()
    offline = NodeStatus("n2", "offline", ["numbers.npy"]).to_bytes()
    forge = [(topics.results(swarm, "n2"), forged), (topics.node_status("n2"), offline)]
    assert "n9" not in ENROLLED  # n9 has a certificate but no ACL block: it reads no shared data
    try:
        with Attack(site, "n1", ["n2"], forge) as as_node, Attack(site, "n9", [f"coordinator-{swarm}"], []) as as_coord:
            summary = run.run()
    finally:
        for node in victims:
            node.stop()
    assert summary.state == "stopped", summary.reason
    check_counter_results(RunStore.open(summary.store_path), ["n2", "n3"], 3)
    assert as_node.accepted > 1 and as_coord.accepted > 1  # the attackers were let in, as themselves
    log = site.log()
    assert "already connected" not in log  # nobody was kicked out
    assert "as n1 (p5, c1, k30, u'n1')" in log and "as n9 (p5, c1, k30, u'n9')" in log
    for node in victims:
        assert "disconnected from" not in node.output()
    assert summary.rejected == {}  # the ACL dropped every forgery
    assert [t for t in as_node.stolen if "/assign/" in t] == []  # n1 read none of n2's assignments
    assert as_coord.stolen == []  # n9, not enrolled in the ACL, read no shared data either


def test_two_watch_sessions_of_an_operator_do_not_kick_each_other(site: Site) -> None:
    address = site.address(site.operators, site.pki.files("monitor", "operators"))
    seen: list[list[str]] = [[], []]
    stop = threading.Event()
    watchers = [
        threading.Thread(target=watch, args=(address,), kwargs={"version": "5", "topic_filter": "manta/v2/#",
                                                                  "emit": seen[i].append, "stop": stop})
        for i in range(2)
    ]  # fmt: skip
    for watcher in watchers:
        watcher.start()
        time.sleep(0.01)  # distinct client ids, as two sessions started by hand would have
    publisher = MqttLink("coordinator-x", site.address(site.operators, site.pki.files("coordinator", "operators")))
    try:
        assert publisher.start()
        deadline = time.monotonic() + 10
        while not all(seen) and time.monotonic() < deadline:
            publisher.publish(topics.node_status("n2"), NodeStatus("n2", "online", []).to_bytes(), qos=0)
            time.sleep(0.2)
    finally:
        publisher.stop()
        stop.set()
        for watcher in watchers:
            watcher.join()
    assert all(seen) and "already connected" not in site.log()
    assert site.log().count("u'monitor'") == 2
