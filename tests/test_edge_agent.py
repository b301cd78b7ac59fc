"""The edge agent's threads: paho's handlers only check and enqueue, and the main thread's pump
applies the job book (dispatch, duplicates, cancellation, the retained status), with no broker;
then the whole agent over the in-process broker."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_node.agent import EdgeAgent
from edge_node.config import NodeConfig
from edge_node.events import (
    AssignmentArrived,
    Connected,
    DiscoverRequested,
    Job,
    JobFinished,
    JobStarted,
    SwarmEnded,
    WorkerCrashed,
)
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import Assignment, CodeRef, Discover, NodeStatus, ResultEnvelope, SwarmState
from manta_mqtt.protocol.signing import Trust
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .conftest import BrokerUnderTest

SHA = "ab" * 32


def assignment(swarm: str = "sw", iteration: int = 0) -> Assignment:
    return Assignment(swarm, iteration, "worker", 0, CodeRef(SHA, "worker"), {}, [], 60.0)


@pytest.fixture
def agent(tmp_path: Path) -> EdgeAgent:
    return EdgeAgent(NodeConfig("n1", BrokerAddress.parse("mqtt://127.0.0.1:9"), tmp_path))


class Recorder:
    """Stands in for the link's publish and the worker's queue."""

    def __init__(self, agent: EdgeAgent, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statuses: list[dict[str, object]] = []
        self.submitted: list[Job] = []
        self.deliveries = 0
        monkeypatch.setattr(agent.link, "publish", self.publish)
        monkeypatch.setattr(agent.worker, "submit", self.submitted.append)
        monkeypatch.setattr(agent.worker, "deliver_pending", self.deliver)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        assert topic == topics.node_status("n1") and retain
        self.statuses.append(json.loads(payload))

    def deliver(self) -> None:
        self.deliveries += 1


def drain(agent: EdgeAgent) -> None:
    while not agent.inbox.empty():
        agent.pump(0)


def test_network_thread_handlers_only_check_and_enqueue(agent: EdgeAgent) -> None:
    agent.owner.check()  # this thread is the main thread: anything the handlers touched would raise
    assert agent.book.jobs() == []
    assert agent.worker.outbox.pending() == []
    good = assignment()
    mine, stranger = topics.assignment("sw", "n1"), topics.assignment("sw", "n2")
    errors: list[BaseException] = []

    def network_thread() -> None:
        try:
            agent.intake.on_assignment(mine, good.to_bytes(), False)
            agent.intake.on_assignment(mine, good.to_bytes(), False)  # a duplicate: not decided here
            agent.intake.on_assignment(stranger, good.to_bytes(), False)  # forged
            agent.intake.on_assignment(topics.assignment("other", "n1"), good.to_bytes(), False)  # forged
            agent.intake.on_assignment(mine, b"\xc1 garbage", False)  # malformed
            agent.intake.on_assignment(mine, b"\x00" * (2 << 20), False)  # oversized
            agent.intake.on_assignment(mine, b"", True)  # a cleared retained message
            agent.intake.on_swarm_state(topics.swarm_state("sw"), SwarmState("sw", "x", "running").to_bytes(), True)
            agent.intake.on_swarm_state(topics.swarm_state("sw"), SwarmState("sw", "x", "stopped").to_bytes(), True)
            agent.intake.on_swarm_state(topics.swarm_state("sw"), b"{not json", False)  # malformed
            agent.intake.on_connect()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=network_thread, name="paho-network")
    thread.start()
    thread.join()
    assert errors == []
    events = []
    while not agent.inbox.empty():
        events.append(agent.inbox.get_nowait())
    assert events == [AssignmentArrived(good), AssignmentArrived(good), SwarmEnded("sw", "stopped"), Connected()]
    assert agent.reject.as_dict() == {"forged": 2, "malformed": 2, "oversized": 1}
    assert agent.book.jobs() == []


def test_a_will_published_while_the_node_runs_and_discover_requests_get_one_status(agent: EdgeAgent) -> None:
    """An offline status of this session (a cluster member published our will though we are
    connected) is answered like a discover: one pending request at most, whatever comes."""
    own = topics.node_status("n1")
    mine = NodeStatus("n1", "offline", [], agent.session).to_bytes()
    agent.intake.on_own_status(own, NodeStatus("n1", "online", [], agent.session).to_bytes(), False)  # ours
    agent.intake.on_own_status(own, NodeStatus("n1", "offline", [], agent.session - 1).to_bytes(), False)  # old run
    agent.intake.on_own_status(own, mine, True)  # retained: we announce on connecting anyway
    assert agent.inbox.empty()
    agent.intake.on_own_status(own, mine, False)
    agent.intake.on_discover(topics.discover(), Discover("c").to_bytes(), False)
    assert agent.inbox.get_nowait() == DiscoverRequested() and agent.inbox.empty()
    agent.intake.on_own_status(own, b"{not json", False)
    assert agent.reject.as_dict() == {"malformed": 1}


def test_the_pump_dispatches_dedupes_and_announces(agent: EdgeAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(agent, monkeypatch)
    a = assignment("sw", 2)
    for event in (Connected(), AssignmentArrived(a), AssignmentArrived(a)):
        agent.inbox.put(event)
    drain(agent)
    (job,) = rec.submitted
    assert rec.deliveries == 1
    assert agent.reject.as_dict() == {"duplicate": 1}
    agent.inbox.put(JobStarted(job.key))
    agent.inbox.put(AssignmentArrived(a))
    drain(agent)
    agent.inbox.put(JobFinished(job.key))
    drain(agent)
    states = [(s["state"], s["running"]) for s in rec.statuses]
    assert states == [("online", None), ("busy", "sw/2/worker"), ("online", None)]
    assert rec.statuses[-1]["rejected"] == {"duplicate": 2}


def test_a_swarm_end_cancels_its_running_and_queued_jobs(agent: EdgeAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(agent, monkeypatch)
    for event in (AssignmentArrived(assignment("sw", 0)), AssignmentArrived(assignment("sw", 1))):
        agent.inbox.put(event)
    agent.inbox.put(AssignmentArrived(assignment("other", 0)))
    drain(agent)
    running, queued, other = rec.submitted
    agent.inbox.put(JobStarted(running.key))
    agent.inbox.put(SwarmEnded("sw", "stopped"))
    agent.inbox.put(AssignmentArrived(assignment("sw", 2)))
    drain(agent)
    assert running.cancel.is_set() and queued.cancel.is_set() and not other.cancel.is_set()
    assert len(rec.submitted) == 3 and agent.reject.as_dict() == {"late": 1}


def test_a_worker_crash_stops_the_agent(agent: EdgeAgent) -> None:
    agent.inbox.put(WorkerCrashed("OSError('disk gone')"))
    with pytest.raises(RuntimeError, match="disk gone"):
        agent.pump(0)


# --- the whole agent over an in-process broker ---------------------------------------------------


def wait(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_agent_over_a_broker(amqtt_broker: BrokerUnderTest, tmp_path: Path) -> None:
    """Busy while running, duplicates counted, a repeat answered from the outbox, a finished
    swarm's work refused, and a clean stop: offline status, no thread left behind."""
    address = BrokerAddress.parse(amqtt_broker.url)
    config = NodeConfig("n1", address, tmp_path, mqtt_version="3.1.1", trust=Trust([], allow_unsigned=True))
    agent, stop = EdgeAgent(config), threading.Event()
    statuses: list[NodeStatus] = []
    envelopes: list[ResultEnvelope] = []
    coordinator = MqttLink("coord", address, version="3.1.1", session_expiry=0)
    coordinator.route(topics.node_status("n1"), lambda t, p, r: p and statuses.append(NodeStatus.parse(p)))
    coordinator.route(topics.swarm_results("sw"), lambda t, p, r: envelopes.append(ResultEnvelope.parse(p)))
    assert coordinator.start()
    assert coordinator.subscribe([topics.node_status("n1"), topics.swarm_results("sw")], wait=5)
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent-main")
    runner.start()
    try:
        wait(lambda: any(s.state == "online" for s in statuses), "online")
        work = dataclasses.replace(assignment("sw", 0), timeout=1.5)  # its code is nowhere: fetching fails
        coordinator.publish(topics.assignment("sw", "n1"), work.to_bytes())
        wait(lambda: any(s.running == "sw/0/worker" for s in statuses), "busy")
        coordinator.publish(topics.assignment("sw", "n1"), work.to_bytes())
        wait(lambda: len(envelopes) == 1, "the result")
        assert envelopes[0].status == "failed" and "could not fetch" in envelopes[0].error
        wait(lambda: statuses[-1].state == "online", "online again")
        assert statuses[-1].rejected == {"duplicate": 1}
        coordinator.publish(topics.assignment("sw", "n1"), work.to_bytes())
        wait(lambda: len(envelopes) == 2, "the result again, from the outbox")
        assert envelopes[1] == envelopes[0]
        ended = SwarmState("done", "x", "completed").to_bytes()
        coordinator.publish(topics.swarm_state("done"), ended, retain=True)
        coordinator.publish(topics.assignment("done", "n1"), assignment("done").to_bytes())
        wait(lambda: agent.reject.as_dict().get("late") == 1, "late work refused")
    finally:
        stop.set()
        runner.join(30)
        coordinator.publish(topics.swarm_state("done"), b"", retain=True)
        coordinator.flush(5)
    wait(lambda: statuses[-1].state == "offline", "offline")
    coordinator.stop()
    assert not runner.is_alive()
    assert [t.name for t in threading.enumerate() if t.name == "edge-worker"] == []


def test_the_status_is_a_heartbeat(amqtt_broker: BrokerUnderTest, tmp_path: Path) -> None:
    """An idle node publishes its status again and again, each with a later heartbeat time, so
    that a coordinator can tell it from a retained status nobody refreshes."""
    address = BrokerAddress.parse(amqtt_broker.url)
    agent, stop = EdgeAgent(NodeConfig("n1", address, tmp_path, mqtt_version="3.1.1")), threading.Event()
    agent.heartbeat_seconds = 0.3
    statuses: list[NodeStatus] = []
    watcher = MqttLink("watcher", address, version="3.1.1", session_expiry=0)
    watcher.route(topics.node_status("n1"), lambda t, p, r: p and statuses.append(NodeStatus.parse(p)))
    assert watcher.start() and watcher.subscribe(topics.node_status("n1"), wait=5)
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent-main")
    runner.start()
    try:
        wait(lambda: len([s for s in statuses if s.state == "online"]) >= 4, "four heartbeats")
    finally:
        stop.set()
        runner.join(30)
        watcher.stop()
    beats = [s.heartbeat for s in statuses if s.state == "online"]
    assert beats == sorted(beats) and beats[-1] > beats[0] > 0
