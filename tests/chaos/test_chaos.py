"""Chaos: real node processes, a real Mosquitto (started by the test), real failures. Every
scenario checks the results exactly: nothing lost, nothing counted twice.

The counter swarm is deterministic: in iteration i every worker reports x = i + 1 and the sum
of its data (45), and a chunked array of i + 1; the aggregator checks the chunked uploads,
publishes a chunked global, and loops until x reaches `rounds`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions, RunSummary
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus, SwarmState
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import ROOT, SIGNING_KEY, BrokerUnderTest, NodeProcess, mosquitto_binary
from .proxy import LinkProxy
from .runner import counter_swarm


def numbers(tmp_path: Path) -> dict[str, Path]:
    path = tmp_path / "numbers.npy"
    np.save(path, np.arange(10))
    return {"numbers.npy": path}


def expect_exact(store: RunStore, per_iteration: dict[int, list[str]], rounds: int) -> None:
    """Each iteration's worker results come from exactly these nodes, with exactly these values."""
    vals = store.results("val")
    assert sorted(vals) == sorted(per_iteration), vals.keys()
    for iteration, nodes in per_iteration.items():
        assert vals[iteration] == {n: {"x": iteration + 1, "sum": 45, "node": n} for n in nodes}, iteration
        bigs = store.results("big", iteration)[iteration]
        assert sorted(bigs) == sorted(nodes)
        assert all(np.array_equal(b, np.full(400_000, iteration + 1.0)) for b in bigs.values())
    size = store.global_value("size")
    np.testing.assert_array_equal(store.global_value("weights"), np.full(size, float(rounds)))
    assert store.global_value("x") == rounds


class Watcher:
    """Follows node status and swarm state, to time the chaos right."""

    def __init__(self, broker: BrokerUnderTest) -> None:
        self.status: dict[str, NodeStatus] = {}
        self.state: dict[str, SwarmState] = {}
        self.link = MqttLink(f"watcher-{time.monotonic_ns()}", BrokerAddress.parse(broker.url), version=broker.version)
        self.link.route(topics.all_node_status(), self._on_status)
        self.link.route(topics.all_swarm_states(), self._on_state)
        assert self.link.start()
        self.link.subscribe([topics.all_node_status(), topics.all_swarm_states()])

    def _on_status(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload:
            status = NodeStatus.parse(payload)
            self.status[status.node] = status

    def _on_state(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload:
            state = SwarmState.parse(payload)
            self.state[state.swarm] = state

    def wait(self, predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def running(self, node: str, iteration: int) -> bool:
        status = self.status.get(node)
        return status is not None and (status.running or "").endswith(f"/{iteration}/worker")

    def stop(self) -> None:
        self.link.stop()


def in_thread(coordinator: Coordinator) -> tuple[threading.Thread, list[RunSummary]]:
    out: list[RunSummary] = []
    thread = threading.Thread(target=lambda: out.append(coordinator.run()), daemon=True)
    thread.start()
    return thread, out


def coordinator(
    broker: BrokerUnderTest, tmp_path: Path, min_nodes: int, reconnect_grace: float = 15.0, **settings: Any
) -> Coordinator:
    swarm = counter_swarm({"globals": settings.get("globals", {}), "worker": settings.get("worker", {})})
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs",
        min_nodes=min_nodes,
        wait_nodes=30,
        mqtt_version=broker.version,
        reconnect_grace=reconnect_grace,
        signing_key=SIGNING_KEY,
    )
    return Coordinator(swarm, BrokerAddress.parse(broker.url), options, ConsoleProgress())  # type: ignore[arg-type]


def finish(thread: threading.Thread, out: list[RunSummary], timeout: float = 120) -> RunSummary:
    thread.join(timeout)
    assert out, "the coordinator did not finish"
    return out[0]


def test_kill_9_a_node_mid_round(mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """A node killed while it trains: its will marks it offline at once; with a quorum of 2
    the round goes on with the others, and the swarm completes without it."""
    nodes = start_nodes(mosquitto, ["n1", "n2", "n3"], numbers(tmp_path))
    watcher = Watcher(mosquitto)
    coord = coordinator(mosquitto, tmp_path, 3, reconnect_grace=2.0, globals={"delay": 1.0}, worker={"quorum": 2})
    thread, out = in_thread(coord)
    watcher.wait(lambda: watcher.running("n3", 1), what="n3 to run iteration 1")
    killed_at = time.time()
    os.kill(nodes[2].proc.pid, signal.SIGKILL)
    summary = finish(thread, out)
    watcher.stop()
    assert summary.state == "stopped", summary.reason
    store = RunStore.open(summary.store_path)
    expect_exact(store, {0: ["n1", "n2", "n3"], 1: ["n1", "n2"], 2: ["n1", "n2"]}, 3)
    lost = next(r for r in store.runs() if (r["iteration"], r["node"]) == (1, "n3"))
    assert not lost["ok"] and "offline" in lost["error"]
    noticed = store._rows("SELECT at FROM runs WHERE iteration = 1 AND node = 'n3'")[0][0]
    print(f"dead node noticed {noticed - killed_at:.3f} s after kill -9")
    assert noticed - killed_at < 5


def test_kill_9_the_coordinator_and_resume(mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """The coordinator dies mid-run; `--resume` continues from its last completed step and the
    results equal those of an uninterrupted run."""
    start_nodes(mosquitto, ["n1", "n2"], numbers(tmp_path))
    settings = json.dumps({"globals": {"delay": 0.5, "rounds": 5}, "min_nodes": 2, "signing_key": str(SIGNING_KEY)})
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "tests.chaos.runner", str(runs), mosquitto.url, "5", settings]
    log = (tmp_path / "coordinator.log").open("w")
    first = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    watcher = Watcher(mosquitto)
    watcher.wait(
        lambda: any(s.iteration >= 2 and s.step == "worker" for s in watcher.state.values()), what="iteration 2"
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    (run_dir,) = list(runs.iterdir())
    restarted_at = time.time()
    resumed = subprocess.run(
        [*command, "--resume", str(run_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    watcher.stop()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert final["state"] == "stopped" and final["iterations"] == 5
    store = RunStore.open(run_dir)
    expect_exact(store, {i: ["n1", "n2"] for i in range(5)}, 5)
    assert all(r["ok"] for r in store.runs())
    first_after = min(at for (at,) in store._rows("SELECT at FROM runs") if at > restarted_at)
    print(
        f"resume: first step completed {first_after - restarted_at:.2f} s after the restart; "
        f"swarm completed {time.monotonic() - killed_at:.1f} s after the kill"
    )


def test_broker_restart_mid_transfer(tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """Mosquitto (with persistence) restarts while 16 MB globals are moving: no result is lost."""
    server = MosquittoProcess(
        tmp_path / "mosquitto",
        extra=f"persistence true\npersistence_location {tmp_path}/\nautosave_interval 1\n",
        binary=mosquitto_binary(),
    ).start()
    broker = BrokerUnderTest("mosquitto", server.url, "5", server.port)
    try:
        start_nodes(broker, ["n1", "n2"], numbers(tmp_path))
        watcher = Watcher(broker)
        size = 2_000_000  # 16 MB of float64: 16 chunks per global version
        coord = coordinator(broker, tmp_path, 2, globals={"size": size, "weights": np.zeros(size)})
        thread, out = in_thread(coord)
        watcher.wait(lambda: any(s.iteration == 1 and s.step == "worker" for s in watcher.state.values()), what="it 1")
        watcher.stop()
        server.stop()  # mid-transfer of iteration 1's globals (or just after): either must work
        time.sleep(1.0)
        server.start()
        summary = finish(thread, out, timeout=180)
    finally:
        server.stop()
    assert summary.state == "stopped", summary.reason
    expect_exact(RunStore.open(summary.store_path), {i: ["n1", "n2"] for i in range(3)}, 3)


def test_straggler_past_the_deadline(mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """A node frozen (SIGSTOP) past the step deadline: the step proceeds with the quorum; the
    straggler's result, when it thaws, is recorded as late and not mixed into the step."""
    nodes = start_nodes(mosquitto, ["n1", "n2", "n3"], numbers(tmp_path))
    watcher = Watcher(mosquitto)
    coord = coordinator(
        mosquitto, tmp_path, 3, globals={"delay": 1.0, "nodes": ["n1", "n2"]}, worker={"quorum": 2, "deadline": 4.0}
    )
    thread, out = in_thread(coord)
    watcher.wait(lambda: watcher.running("n3", 0), what="n3 to run iteration 0")
    frozen = [psutil.Process(nodes[2].proc.pid), *psutil.Process(nodes[2].proc.pid).children(recursive=True)]
    for proc in frozen:
        proc.send_signal(signal.SIGSTOP)
    watcher.wait(lambda: any(s.iteration >= 1 for s in watcher.state.values()), what="iteration 1")
    for proc in frozen:
        proc.send_signal(signal.SIGCONT)
    summary = finish(thread, out)
    deadline = time.monotonic() + 20
    store = RunStore.open(summary.store_path)
    while not store.late_results("val") and time.monotonic() < deadline:
        time.sleep(0.2)  # the swarm may end before the thawed node's result arrives
    watcher.stop()
    assert summary.state == "stopped", summary.reason
    expect_exact(store, {0: ["n1", "n2"], 1: ["n1", "n2"], 2: ["n1", "n2"]}, 3)
    straggler = next(r for r in store.runs() if (r["iteration"], r["node"]) == (0, "n3"))
    assert not straggler["ok"] and "straggler" in straggler["error"]


def test_link_cut_and_restored(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    """A node's link drops while it trains and comes back seconds later: its result waited in
    the outbox on disk and is delivered; the step (quorum: all) waited for it."""
    proxy = LinkProxy(mosquitto.port)
    via_proxy = BrokerUnderTest("proxied", f"mqtt://127.0.0.1:{proxy.port}", "5", proxy.port)
    data = numbers(tmp_path)
    direct = NodeProcess(tmp_path / "nodes", "n1", mosquitto, data).start()
    flaky = NodeProcess(tmp_path / "nodes", "n2", via_proxy, data).start()
    watcher = Watcher(mosquitto)
    try:
        coord = coordinator(mosquitto, tmp_path, 2, globals={"delay": 1.5}, worker={"quorum": None})
        thread, out = in_thread(coord)
        watcher.wait(lambda: watcher.running("n2", 1), what="n2 to run iteration 1")
        time.sleep(0.6)  # past fetching the globals (tens of ms here): inside the 1.5 s task
        proxy.cut()
        time.sleep(4.0)  # the task finishes while the link is down
        proxy.restore()
        summary = finish(thread, out, timeout=120)
    finally:
        watcher.stop()
        direct.stop()
        flaky.stop()
        proxy.close()
    assert summary.state == "stopped", summary.reason
    expect_exact(RunStore.open(summary.store_path), {i: ["n1", "n2"] for i in range(3)}, 3)
    assert "kept in the outbox" in flaky.output()


def test_duplicate_and_out_of_order_deliveries(mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """Every result envelope is delivered three times, and old ones again later, out of order:
    each counts once."""
    start_nodes(mosquitto, ["n1", "n2"], numbers(tmp_path))
    coord = coordinator(mosquitto, tmp_path, 2, globals={"rounds": 4})
    captured: list[tuple[str, bytes]] = []
    replayer = MqttLink("replayer", BrokerAddress.parse(mosquitto.url), version="5", session_expiry=0)

    seen: set[bytes] = set()

    def replay(topic: str, payload: bytes, retained: bool) -> None:
        if payload in seen:
            return  # one of our own replays coming back
        seen.add(payload)
        captured.append((topic, payload))
        for old_topic, old_payload in [(topic, payload), (topic, payload), *captured[:-1][-2:]]:
            replayer.publish(old_topic, old_payload)  # duplicates now, and older ones again

    replayer.route(topics.swarm_results(coord.swarm_id), replay)
    assert replayer.start()
    replayer.subscribe(topics.swarm_results(coord.swarm_id))
    summary = coord.run()
    replayer.stop()
    assert summary.state == "stopped", summary.reason
    store = RunStore.open(summary.store_path)
    expect_exact(store, {i: ["n1", "n2"] for i in range(4)}, 4)
    assert len(store.runs()) == 4 * 3
    assert summary.rejected.get("duplicate", 0) + summary.rejected.get("late", 0) >= 2 * len(captured)


def test_task_killed_like_an_oom(mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """A task dies of SIGSEGV on one node: reported with its signal, the node stays healthy and
    runs the next iteration; the round goes on with the other node."""
    nodes = start_nodes(mosquitto, ["n1", "n2"], numbers(tmp_path))
    coord = coordinator(mosquitto, tmp_path, 2, globals={"crash": ["n1", 1], "nodes": ["n1", "n2"]})
    summary = coord.run()
    assert summary.state == "stopped", summary.reason
    store = RunStore.open(summary.store_path)
    expect_exact(store, {0: ["n1", "n2"], 1: ["n2"], 2: ["n1", "n2"]}, 3)
    crashed = next(r for r in store.runs() if (r["iteration"], r["node"]) == (1, "n1"))
    assert "SIGSEGV" in crashed["error"]
    assert nodes[0].proc.poll() is None


def test_garbage_and_oversized_payloads_during_a_round(
    amqtt_broker: BrokerUnderTest, tmp_path: Path, start_nodes
) -> None:  # type: ignore[no-untyped-def]
    """Oversized messages (a 2 MB assignment, a 65 MB result) and garbage arrive mid-round:
    refused and counted, the round completes exactly. (amqtt: it has no packet limit of its
    own, so the oversized messages reach our checks.)"""
    start_nodes(amqtt_broker, ["n1", "n2"], numbers(tmp_path))
    coord = coordinator(amqtt_broker, tmp_path, 2, globals={"delay": 0.5})
    vandal = MqttLink("vandal", BrokerAddress.parse(amqtt_broker.url), version="3.1.1", session_expiry=0)
    assert vandal.start()
    thread, out = in_thread(coord)
    time.sleep(1.5)
    vandal.publish(topics.assignment(coord.swarm_id, "n1"), b"\x00" * (2 * 1024 * 1024))
    vandal.publish(topics.results(coord.swarm_id, "n1"), b"\x00" * (65 * 1024 * 1024))
    vandal.publish(topics.results(coord.swarm_id, "n2"), b"\xc1 not msgpack")
    vandal.flush(30)
    summary = finish(thread, out)
    vandal.stop()
    assert summary.state == "stopped", summary.reason
    expect_exact(RunStore.open(summary.store_path), {i: ["n1", "n2"] for i in range(3)}, 3)
    assert summary.rejected.get("oversized", 0) >= 1 and summary.rejected.get("malformed", 0) >= 1


def test_lost_work_moves_to_another_node_with_retry(mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """on_short="retry": a node assigned to the round dies, the round cannot reach its quorum
    (all three), so the step runs again on the idle fourth node and completes exactly."""
    ids = ["n1", "n2", "n3", "n4"]
    nodes = dict(zip(ids, start_nodes(mosquitto, ids, numbers(tmp_path)), strict=True))
    watcher = Watcher(mosquitto)
    coord = coordinator(
        mosquitto,
        tmp_path,
        4,
        reconnect_grace=1.0,
        globals={"delay": 1.0},
        worker={"maximum": 3, "quorum": None, "on_short": "retry"},
    )
    thread, out = in_thread(coord)
    watcher.wait(lambda: sum(watcher.running(n, 0) for n in ids) == 3, what="three nodes running iteration 0")
    busy = sorted(n for n in ids if watcher.running(n, 0))
    (idle,) = set(ids) - set(busy)
    victim = busy[0]
    os.kill(nodes[victim].proc.pid, signal.SIGKILL)
    summary = finish(thread, out)
    watcher.stop()
    assert summary.state == "stopped", summary.reason
    survivors = sorted([*busy[1:], idle])
    store = RunStore.open(summary.store_path)
    expect_exact(store, {i: survivors for i in range(3)}, 3)
    moved = next(r for r in store.runs() if (r["iteration"], r["node"]) == (0, idle))
    assert moved["ok"]
