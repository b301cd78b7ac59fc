"""The coordinator's MQTT will and an operator's stop, on a real Mosquitto with real processes.

kill -9 the coordinator: the broker publishes its will, the swarm's retained state turns "lost",
and a node drops that swarm's queued job; ``--resume`` publishes "running" again and the node
takes the work. A ``SwarmControl`` stop on the swarm's control topic ends the run "stopped"
(exit 0), naming who asked; a malformed one is counted and ignored.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import SwarmControl, SwarmState
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..chaos.proxy import LinkProxy
from ..chaos.test_chaos import Watcher, coordinator, expect_exact, finish, in_thread
from ..conftest import BrokerUnderTest
from .test_coordinator_signals import RunProcess, counter_copy, numbers, run_args, run_folder


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_9_turns_the_state_lost_and_the_node_drops_the_queued_job(
    mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes: Any
) -> None:
    (node,) = start_nodes(mosquitto, ["n1"], numbers(tmp_path))
    watcher = Watcher(mosquitto)
    busy = RunProcess(
        tmp_path, "busy", run_args(counter_copy(tmp_path, "busy", rounds=1, delay=6.0), mosquitto, tmp_path / "a")
    )
    victim_runs = tmp_path / "b"
    victim: RunProcess | None = None
    try:
        busy_id = run_folder(tmp_path / "a").name
        watcher.wait(lambda: watcher.running("n1", 0), what="n1 to run the busy swarm")
        victim = RunProcess(
            tmp_path, "victim", run_args(counter_copy(tmp_path, "victim", rounds=1), mosquitto, victim_runs)
        )
        victim_id = run_folder(victim_runs).name
        # its assignment reaches n1 while n1 is busy with the other swarm: it waits in n1's queue
        watcher.wait(
            lambda: victim_id in watcher.state and watcher.state[victim_id].step == "worker", what="the victim's step"
        )
        assert (watcher.status["n1"].running or "").startswith(busy_id)
        victim.proc.send_signal(signal.SIGKILL)
        victim.wait(30)
        watcher.wait(lambda: watcher.state[victim_id].state == "lost", what="the will")
        assert "--resume" in watcher.state[victim_id].reason
        wait_for(lambda: f"swarm {victim_id} is lost: cancelling queued" in node.output(), "n1 to drop the job")
        assert busy.wait(60) == 0
        wait_for(lambda: f"of swarm {victim_id} cancelled before it started" in node.output(), "the skipped job")

        # resumed, the swarm runs again and n1 takes its work
        resumed = RunProcess(
            tmp_path,
            "resumed",
            run_args(
                counter_copy(tmp_path, "victim2", rounds=1),
                mosquitto,
                victim_runs,
                "--resume",
                str(victim_runs / victim_id),
            ),
        )
        assert resumed.wait(60) == 0, resumed.stderr()
        store = RunStore.open(victim_runs / victim_id)
        assert store.meta("final")["state"] == "stopped"
        assert store.results("val") == {0: {"n1": {"x": 1, "sum": 45, "node": "n1"}}}
        assert watcher.state[victim_id].state == "stopped"
    finally:
        busy.stop()
        if victim is not None:
            victim.stop()
        watcher.stop()


def test_an_operator_stop_ends_the_run_stopped_with_exit_0(
    mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes: Any
) -> None:
    start_nodes(mosquitto, ["n1"], numbers(tmp_path))
    watcher = Watcher(mosquitto)
    runs, summary = tmp_path / "runs", tmp_path / "summary.json"
    swarm = counter_copy(tmp_path, "long", rounds=1000, delay=0.5)
    coordinator = RunProcess(tmp_path, "coordinator", run_args(swarm, mosquitto, runs, "--summary-json", str(summary)))
    operator = MqttLink("operator", BrokerAddress.parse(mosquitto.url), version=mosquitto.version, session_expiry=0)
    try:
        swarm_id = run_folder(runs).name
        watcher.wait(lambda: watcher.running("n1", 1), what="iteration 1")
        assert operator.start()
        control = topics.swarm_control(swarm_id)
        operator.publish(control, b"{not json")  # counted and ignored
        operator.publish(control, SwarmControl("someone-else", "stop", "wrong swarm", "mallory").to_bytes())
        operator.publish(control, SwarmControl(swarm_id, "stop", "maintenance window", "alice").to_bytes())
        assert coordinator.wait(60) == 0, coordinator.stderr()
        final = watcher.state[swarm_id]
        assert final.state == "stopped"
        assert final.reason == "stopped by alice: maintenance window"
        result = json.loads(summary.read_text())
        assert result["state"] == "stopped" and result["exit_code"] == 0
        assert result["rejected"] == {"malformed": 1, "forged": 1}
        store = RunStore.open(runs / swarm_id)
        assert store.meta("final")["reason"] == "stopped by alice: maintenance window"
        assert 1 <= result["iterations"] == len(store.iterations()) < 1000
    finally:
        operator.stop()
        coordinator.stop()
        watcher.stop()


class StateHistory(Watcher):
    """A watcher that keeps every swarm state it saw, in order."""

    def __init__(self, broker: BrokerUnderTest) -> None:
        self.seen: list[str] = []
        super().__init__(broker)

    def _on_state(self, topic: str, payload: bytes, retained: bool) -> None:
        super()._on_state(topic, payload, retained)
        if payload:
            self.seen.append(SwarmState.parse(payload).state)


def test_a_coordinator_link_blip_fires_the_will_and_the_run_recovers(
    mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes: Any
) -> None:
    """Our will fires while we live (the connection broke): nodes drop our jobs; once paho has
    reconnected we publish "running" again and re-send the open step, and the run ends exact."""
    nodes = start_nodes(mosquitto, ["n1", "n2"], numbers(tmp_path))
    proxy = LinkProxy(mosquitto.port)
    via_proxy = BrokerUnderTest("proxied", f"mqtt://127.0.0.1:{proxy.port}", "5", proxy.port)
    history = StateHistory(mosquitto)
    try:
        coord = coordinator(via_proxy, tmp_path, 2, globals={"delay": 3.0})
        thread, out = in_thread(coord)
        history.wait(lambda: all(history.running(n, 1) for n in ("n1", "n2")), what="iteration 1 on both")
        proxy.cut()
        history.wait(lambda: history.seen[-1] == "lost", what="the will")
        history.wait(lambda: not any(history.running(n, 1) for n in ("n1", "n2")), what="the nodes to drop the job")
        proxy.restore()
        summary = finish(thread, out, timeout=120)
    finally:
        history.stop()
        proxy.close()
    assert summary.state == "stopped", summary.reason
    assert history.seen[-1] == "stopped" and "lost" in history.seen
    assert history.seen[history.seen.index("lost") + 1] == "running"
    expect_exact(RunStore.open(summary.store_path), {i: ["n1", "n2"] for i in range(3)}, 3)
    for node in nodes:
        assert f"swarm {summary.swarm_id} is lost: cancelling its running task" in node.output()
