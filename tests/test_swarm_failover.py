"""Failover: the server a node is on dies mid-step; the node moves to another cluster member and
the swarm finishes with the exact result.

A 3-server NATS cluster (JetStream replicated on all three, so MQTT sessions survive a member).
Every client knows all members (a multi-host URL), its own first: node n1 and the coordinator on
member 0, n2 on member 1, n3 on member 2. While the workers of iteration 1 run, member 1 is
killed (SIGKILL: no will reaches anyone). n2 must reconnect to another member within 10 s,
announce itself with a new ``link``, and the coordinator must ask it again for its work instead
of waiting out the step's deadline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from manta_mqtt.coordinator.coordinator import RunSummary
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus, ProtocolError, SwarmState
from manta_mqtt.tools.nats import NatsCluster, find_nats_server
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .conftest import BrokerUnderTest
from .test_e2e_swarm import COUNTER, check_counter_results, numbers, run_swarm

pytestmark = pytest.mark.slow


def cluster_url(urls: list[str], first: int) -> str:
    """All members, ``first`` first: ``mqtt://h:p1,h:p2,h:p3``."""
    hosts = [urlsplit(u).netloc for u in urls[first:] + urls[:first]]
    return "mqtt://" + ",".join(hosts)


class Watcher:
    """Statuses and swarm states as seen from a surviving member."""

    def __init__(self, url: str) -> None:
        self.statuses: list[tuple[float, NodeStatus]] = []
        self.states: list[SwarmState] = []
        self.link = MqttLink(
            f"watcher-{time.monotonic_ns()}", BrokerAddress.parse(url), version="3.1.1", session_expiry=0
        )
        self.link.route(topics.all_node_status(), self._on_status)
        self.link.route(topics.all_swarm_states(), self._on_state)
        assert self.link.start()
        assert self.link.subscribe([topics.all_node_status(), topics.all_swarm_states()], qos=0, wait=10)

    def _on_status(self, _topic: str, payload: bytes, _retained: bool) -> None:
        with contextlib.suppress(ProtocolError):
            self.statuses.append((time.monotonic(), NodeStatus.parse(payload)))

    def _on_state(self, _topic: str, payload: bytes, _retained: bool) -> None:
        with contextlib.suppress(ProtocolError):
            self.states.append(SwarmState.parse(payload))

    def wait_for(self, check: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return True
            time.sleep(0.05)
        return False


@pytest.mark.skipif(find_nats_server() is None, reason="nats-server is not installed")
@pytest.mark.parametrize(
    ("victim", "node"), [(1, "n2"), (0, "n1")], ids=["a-node-s-server", "the-coordinator-s-server"]
)
def test_a_node_whose_server_dies_is_back_within_10_s_and_the_swarm_finishes(
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
    victim: int,
    node: str,
) -> None:
    """Member ``victim`` dies mid-step; ``node`` was on it (with the coordinator, for member 0)."""
    with NatsCluster(tmp_path / "nats", size=3) as cluster:
        members = [BrokerUnderTest(f"member{i}", cluster_url(cluster.urls, i), "3.1.1", 0) for i in range(3)]
        data = {"numbers.npy": numbers(tmp_path)}
        for i, name in enumerate(["n1", "n2", "n3"]):
            start_nodes(members[i], [name], data)
        watcher = Watcher(cluster_url(cluster.urls, 2))  # on member 2, which survives
        result: list[RunSummary] = []
        runner = threading.Thread(
            target=lambda: result.append(run_swarm(COUNTER, members[0], tmp_path / "runs", 3, delay=2.0))
        )
        killed = time.monotonic()
        runner.start()
        try:
            running_step = lambda: any(s.iteration == 1 and s.step == "worker" for s in watcher.states)  # noqa: E731
            assert watcher.wait_for(running_step, 60), "iteration 1 never started"
            time.sleep(0.5)  # the workers are running (each sleeps 2 s)
            before = max(s.link for _, s in watcher.statuses if s.node == node)
            killed = time.monotonic()
            cluster.servers[victim].kill()
            back = lambda: any(t > killed and s.node == node and s.link > before for t, s in watcher.statuses)  # noqa: E731
            assert watcher.wait_for(back, 30), f"{node} never came back"
            returned = min(t for t, s in watcher.statuses if t > killed and s.node == node and s.link > before)
            print(f"{node} back after {returned - killed:.2f} s")
            # the target is 10 s; measured 1.0-9.0 s (docs/deploy.md): NATS's leader election sets
            # it, so the bound leaves room for a slow one rather than fail CI on the broker's clock
            assert returned - killed <= 15.0
            runner.join(120)
        finally:
            watcher.link.stop()
            for t, s in watcher.statuses:  # shown when the test fails
                print(f"{t - killed:+7.2f} {s.node} {s.state} session={s.session} link={s.link} server={s.server}")
        assert result, "the swarm did not finish within 2 minutes"
        summary = result[0]
        assert summary.state == "stopped", summary.reason
        check_counter_results(RunStore.open(summary.store_path), ["n1", "n2", "n3"], 3)
        after = [s for t, s in watcher.statuses if t > killed and s.node == node]
        assert after and after[-1].server != f"127.0.0.1:{urlsplit(cluster.urls[victim]).port}"
        print(f"swarm finished {time.monotonic() - killed:.1f} s after the kill")
