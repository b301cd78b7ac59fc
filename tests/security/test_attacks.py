"""The attacks of the security review, replayed while a real swarm runs: each is refused, and the
victim's swarm finishes with exactly the results it would have had without them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from manta_mqtt import BrokerAddress, Coordinator, CoordinatorOptions, RunStore, load_swarm
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import Assignment, CodeRef, NodeStatus
from manta_mqtt.transport.blob_server import BlobServer
from manta_mqtt.transport.mqtt import MqttLink

from ..conftest import SIGNING_KEY, BrokerUnderTest
from ..test_e2e_swarm import COUNTER, check_counter_results, numbers

EVIL_CODE = b"PK\x05\x06" + b"\x00" * 18  # whatever it is, no node may run it


def options(tmp_path: Path, broker: BrokerUnderTest, **more: object) -> CoordinatorOptions:
    return CoordinatorOptions(
        runs_dir=tmp_path / "runs",
        wait_nodes=30,
        mqtt_version=broker.version,
        signing_key=SIGNING_KEY,
        **more,  # type: ignore[arg-type]
    )


def test_forged_assignments_run_nowhere_while_the_real_swarm_finishes(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    """Anyone who can publish on the broker sends code and assignments to every node, again and
    again during a run, and serves the code to whoever asks: the nodes refuse them all (not
    signed by the owner) before asking for anything, and say so."""
    ids = ["n1", "n2"]
    nodes = start_nodes(mosquitto, ids, {"numbers.npy": numbers(tmp_path)})
    address = BrokerAddress.parse(mosquitto.url)
    attacker = MqttLink("attacker", address, version=mosquitto.version, session_expiry=0)
    assert attacker.start()
    server = BlobServer(attacker, "evil").start()
    assert attacker.subscribe(server.filters, wait=10)
    code = server.offer(EVIL_CODE)
    stop = threading.Event()

    def forge() -> None:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            for node in ids:
                work = Assignment("evil", 0, "pwn", attempt, CodeRef(code, "pwn"), {}, [], 60.0)
                attacker.publish(topics.assignment("evil", node), work.to_bytes())
            time.sleep(0.2)

    forger = threading.Thread(target=forge)
    forger.start()
    swarm = load_swarm(COUNTER)
    swarm.globals["delay"] = 0.5
    try:
        summary = Coordinator(swarm, address, options(tmp_path, mosquitto, min_nodes=2), ConsoleProgress()).run()
    finally:
        stop.set()
        forger.join(10)
        server.stop()
        attacker.stop()
    assert summary.state == "stopped", summary.reason
    check_counter_results(RunStore.open(summary.store_path), ids, 3)
    for node in nodes:
        log = node.output()
        assert "rejected (untrusted)" in log and "refused: the assignment is not signed" in log
        assert "running pwn" not in log
    assert server.chunks_sent == 0  # no node even asked for the code


def test_a_compromised_node_cannot_rewrite_globals_or_stop_the_swarm(
    amqtt_broker: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    """n2's task sets x = 1000 and rounds = 1e9 and calls stop_swarm: refused and counted, and the
    swarm computes exactly what it would have without it."""
    ids = ["n1", "n2"]
    start_nodes(amqtt_broker, ids, {"numbers.npy": numbers(tmp_path)})
    swarm = load_swarm(COUNTER)
    swarm.globals["rewrite"] = "n2"
    address = BrokerAddress.parse(amqtt_broker.url)
    summary = Coordinator(swarm, address, options(tmp_path, amqtt_broker, min_nodes=2), ConsoleProgress()).run()
    assert summary.state == "stopped" and summary.reason == "stopped by task aggregator", summary.reason
    check_counter_results(RunStore.open(summary.store_path), ids, 3)
    assert summary.rejected["forbidden"] == 3 * 3  # x, rounds and the stop, in each of 3 iterations


def test_a_retained_status_of_a_node_that_is_gone_does_not_hold_the_swarm(
    amqtt_broker: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    """A retained 'online' status nobody refreshes (a fake, or a node whose will was lost) gets the
    ghost chosen; with no heartbeat it goes stale and the step goes on without it."""
    address = BrokerAddress.parse(amqtt_broker.url)
    faker = MqttLink("faker", address, version=amqtt_broker.version, session_expiry=0)
    assert faker.start()
    ghost = NodeStatus("ghost", "online", ["numbers.npy"], 1)
    faker.publish(topics.node_status("ghost"), ghost.to_bytes(), retain=True)
    faker.flush(5)
    start_nodes(amqtt_broker, ["n1"], {"numbers.npy": numbers(tmp_path)})
    swarm = load_swarm(COUNTER)
    more = {"min_nodes": 2, "stale_after": 4.0, "reconnect_grace": 1.0}
    started = time.monotonic()
    try:
        summary = Coordinator(swarm, address, options(tmp_path, amqtt_broker, **more), ConsoleProgress()).run()
    finally:
        faker.publish(topics.node_status("ghost"), b"", retain=True)
        faker.stop()
    assert summary.state == "stopped", summary.reason
    store = RunStore.open(summary.store_path)
    runs = {(r["iteration"], r["node"]): r for r in store.runs() if r["task"] == "worker"}
    assert not runs[(0, "ghost")]["ok"] and "no status from the node" in runs[(0, "ghost")]["error"]
    assert sorted(store.results("val")[2]) == ["n1"]
    assert time.monotonic() - started < 60  # not the hard deadline of the step (timeout + grace)
