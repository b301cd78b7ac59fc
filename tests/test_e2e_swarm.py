"""End to end over real brokers: a coordinator, edge-node processes, real TCP.

The counter swarm checks exact results (chunked globals down, chunked results up, control flow
through schedule_next_iter and stop_swarm); the seed's MNIST swarm runs unchanged.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions, RunSummary
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import topics
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools import fleet
from manta_mqtt.tools.watch import node_table
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .conftest import ROOT, SIGNING_KEY, BrokerUnderTest, torch_available

COUNTER = Path(__file__).parent / "swarms" / "counter" / "swarm.py"


def run_swarm(swarm_file: Path, broker: BrokerUnderTest, runs: Path, min_nodes: int, **globals_: object) -> RunSummary:
    swarm = load_swarm(swarm_file)
    swarm.globals.update(globals_)
    options = CoordinatorOptions(
        runs_dir=runs,
        min_nodes=min_nodes,
        wait_nodes=30,
        mqtt_version=broker.version,
        chunk_size=1 << 20,
        signing_key=SIGNING_KEY,
    )
    return Coordinator(swarm, BrokerAddress.parse(broker.url), options, ConsoleProgress()).run()


def numbers(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.npy"
    np.save(path, np.arange(10))
    return path


def check_counter_run(summary: RunSummary, nodes: list[str]) -> RunStore:
    """The counter swarm stopped by its aggregator after 3 iterations, nothing rejected, exact results."""
    assert summary.state == "stopped", summary.reason
    assert summary.reason == "stopped by task aggregator"
    assert summary.iterations == 3
    assert summary.rejected == {}
    store = RunStore.open(summary.store_path)
    check_counter_results(store, nodes, 3)
    assert store.meta("final")["state"] == "stopped"
    return store


def check_counter_results(store: RunStore, nodes: list[str], rounds: int) -> None:
    vals = store.results("val")
    assert sorted(vals) == list(range(rounds))
    for iteration in range(rounds):
        assert vals[iteration] == {n: {"x": iteration + 1, "sum": 45, "node": n} for n in nodes}
        bigs = store.results("big", iteration)[iteration]
        assert sorted(bigs) == nodes
        assert all(np.array_equal(b, np.full(400_000, iteration + 1.0)) for b in bigs.values())
    assert store.results("metrics")[rounds - 1] == {"coordinator": {"x": rounds, "nodes": len(nodes)}}
    size = store.global_value("size")
    np.testing.assert_array_equal(store.global_value("weights"), np.full(size, float(rounds)))
    runs = store.runs()
    assert len(runs) == rounds * (len(nodes) + 1) and all(r["ok"] for r in runs)


def test_counter_swarm_runs_to_stop(broker: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """Three node processes, three iterations, exact results; chunking used both ways. Blobs are
    served as the nodes ask, never retained: the swarm leaves only its final state on the broker."""
    ids = ["n1", "n2", "n3"]
    start_nodes(broker, ids, {"numbers.npy": numbers(tmp_path)})
    summary = run_swarm(COUNTER, broker, tmp_path / "runs", len(ids))
    check_counter_run(summary, ids)
    with fleet.connected(BrokerAddress.parse(broker.url), broker.version, "check") as link:
        left = fleet.retained(link, f"{topics.ROOT}/swarms/#")
    assert list(left) == [topics.swarm_state(summary.swarm_id)], "only the final state stays retained"


def test_node_status_is_readable_json_and_goes_offline(broker: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """Retained status a plain subscriber can read; the will marks a killed node offline."""
    (node,) = start_nodes(broker, ["watched"], {"numbers.npy": numbers(tmp_path)})
    address = BrokerAddress.parse(broker.url)
    deadline = time.monotonic() + 15
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in node_table(address, version=broker.version, wait=0.3) if r["state"] == "online"]
    assert rows and rows[0]["node"] == "watched" and rows[0]["datasets"] == ["numbers.npy"]

    raw: list[bytes] = []
    link = MqttLink("raw-reader", address, version=broker.version, session_expiry=0)
    link.route("#", lambda t, p, r: raw.append(p))
    assert link.start()
    link.subscribe("manta/v2/nodes/watched/status", qos=0)
    time.sleep(0.5)
    link.stop()
    assert raw and raw[-1].decode().startswith("{") and '"state": "online"' in raw[-1].decode()

    assert node.proc is not None
    node.proc.kill()  # no clean disconnect: only the broker's will can say it
    node.proc.wait()
    deadline = time.monotonic() + 60  # the broker notices after 1.5 x keepalive at the latest
    state = "online"
    while time.monotonic() < deadline and state != "offline":
        state = str(node_table(address, version=broker.version, wait=0.3)[0]["state"])
    assert state == "offline"


GARBAGE = [
    b"",
    b"\x00\xff garbage \xc1",
    b"{not json",
    b'{"v": 1, "node": "n1", "state": "online"}',  # protocol v1
    b'{"v": 2, "node": "n1", "state": "dancing"}',
    bytes(range(256)) * 40,
]


def msgpack_garbage(swarm_id: str) -> list[bytes]:
    from manta_mqtt.protocol import codec
    from manta_mqtt.protocol.messages import ResultEnvelope

    return [
        # well-formed, but claims another node than its topic (forged) or a step long gone (late)
        ResultEnvelope(swarm_id, 0, "worker", "intruder", 0, "ok", {"val": b"x"}).to_bytes(),
        ResultEnvelope(swarm_id, 999, "worker", "n1", 0, "ok", {"val": b"x"}).to_bytes(),
        codec.encode({"v": 1, "swarm": "x"}),
        codec.encode(
            {"v": 2, "swarm": "no-such-swarm", "iteration": 0, "task": "worker", "node": "n1", "status": "ok"}
        ),
        codec.encode([1, 2, 3]),
        codec.encode({"v": 2}),
    ]


def flood(address: BrokerAddress, version: str, swarm_id: str, stop: threading.Event) -> int:
    """Publish garbage on every topic the coordinator and the nodes subscribe to."""
    link = MqttLink("vandal", address, version=version, session_expiry=0)
    assert link.start()
    sha = "ab" * 32
    targets = [
        "manta/v2/nodes/n1/status",
        "manta/v2/nodes/intruder/status",
        f"manta/v2/swarms/{swarm_id}/results/n1",
        f"manta/v2/swarms/{swarm_id}/results/intruder",
        f"manta/v2/swarms/{swarm_id}/uploads/n1/{sha}/0",
        f"manta/v2/swarms/{swarm_id}/uploads/n2/{'zz' * 32}/0",
        f"manta/v2/swarms/{swarm_id}/assign/n1",
        f"manta/v2/swarms/{swarm_id}/assign/n2",
        "manta/v2/swarms/other-swarm/assign/n1",
        f"manta/v2/swarms/{swarm_id}/state",
        f"manta/v2/swarms/{swarm_id}/blobs/{sha}/0",
        f"manta/v2/swarms/{swarm_id}/want/n1",
        f"manta/v2/swarms/{swarm_id}/want/intruder",
        "manta/v2/discover",
    ]
    payloads = GARBAGE + msgpack_garbage(swarm_id)
    sent = 0
    while not stop.is_set():
        for topic in targets:
            for payload in payloads:
                if payload:  # an empty non-retained message is legal MQTT, and meaningless
                    link.publish(topic, payload, qos=1)
                    sent += 1
        time.sleep(0.05)
    link.stop()
    return sent


def test_garbage_on_every_topic_does_not_stop_a_running_swarm(
    broker: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    """Malformed, wrong-version, unknown-swarm and forged messages are logged and counted."""
    ids = ["n1", "n2"]
    start_nodes(broker, ids, {"numbers.npy": numbers(tmp_path)})
    swarm = load_swarm(COUNTER)
    swarm.globals["delay"] = 0.5
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs", min_nodes=2, wait_nodes=30, mqtt_version=broker.version, signing_key=SIGNING_KEY
    )
    coordinator = Coordinator(swarm, BrokerAddress.parse(broker.url), options, ConsoleProgress())
    stop = threading.Event()
    sent: list[int] = []
    vandal = threading.Thread(
        target=lambda: sent.append(flood(BrokerAddress.parse(broker.url), broker.version, coordinator.swarm_id, stop))
    )
    vandal.start()
    try:
        summary = coordinator.run()
    finally:
        stop.set()
        vandal.join(30)
    assert sent and sent[0] > 100
    assert summary.state == "stopped", summary.reason
    check_counter_results(RunStore.open(summary.store_path), ids, 3)
    assert summary.rejected.get("malformed", 0) > 0
    assert summary.rejected.get("forged", 0) > 0
    assert summary.rejected.get("late", 0) > 0
    assert summary.rejected.get("unknown_swarm", 0) > 0
    rows = {r["node"]: r for r in node_table(BrokerAddress.parse(broker.url), version=broker.version, wait=0.5)}
    assert sum(rows["n1"]["rejected"].values()) > 0  # type: ignore[union-attr]


@pytest.mark.skipif(not torch_available(), reason="the seed's MNIST tasks need torch (pip install torch==2.13.0)")
def test_seed_mnist_swarm_unchanged(broker: BrokerUnderTest, tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    """The seed's three tasks, unchanged, train to the scheduler's stop on three nodes."""
    data = ROOT / "examples" / "mnist_fl" / "data"
    for i in (1, 2, 3):
        start_nodes(broker, [f"node-{i}"], {"mnist_part.npz": data / f"node{i}.npz"})
    summary = run_swarm(ROOT / "examples" / "mnist_fl" / "swarm.py", broker, tmp_path / "runs", 3)
    assert summary.state == "stopped", summary.reason
    assert summary.reason == "stopped by task scheduler"
    store = RunStore.open(summary.store_path)
    latest = {}
    for _it, per_node in sorted(store.results("metrics").items()):
        latest.update({n: m["val_acc"][-1] for n, m in per_node.items()})
    assert sorted(latest) == ["node-1", "node-2", "node-3"]
    assert min(latest.values()) >= 0.95  # the scheduler stops only when every node reached it


def test_a_crashing_task_fails_its_run_and_the_node_lives_on(
    amqtt_broker: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    """A segfault on one node fails that node's run (with the signal); the step goes on with the
    other node, and the crashed node's agent runs the next iteration."""
    ids = ["crashy", "steady"]
    nodes = start_nodes(amqtt_broker, ids, {"numbers.npy": numbers(tmp_path)})
    summary = run_swarm(COUNTER, amqtt_broker, tmp_path / "runs", 2, crash=["crashy", 0], nodes=ids, rounds=2)
    assert summary.state == "stopped", summary.reason
    store = RunStore.open(summary.store_path)
    runs = {(r["iteration"], r["task"], r["node"]): r for r in store.runs()}
    assert not runs[(0, "worker", "crashy")]["ok"]
    assert "SIGSEGV" in runs[(0, "worker", "crashy")]["error"]
    assert runs[(0, "worker", "steady")]["ok"] and runs[(1, "worker", "crashy")]["ok"]
    assert sorted(store.results("val", 0)[0]) == ["steady"]
    assert sorted(store.results("val", 1)[1]) == ["crashy", "steady"]
    assert nodes[0].proc.poll() is None  # the agent survived its task
