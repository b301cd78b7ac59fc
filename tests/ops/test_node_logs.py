"""Node logs over MQTT: the NodeLog message and its bounds, the node's handler (levels, rate
limit, bounded queue, no recursion), and a real edge node whose task fails, read back with
``manta-mqtt logs`` over a real Mosquitto."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_node.remote_log import RemoteLog, split_message
from manta_mqtt.cli.logs import format_record, wanted
from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions, SwarmFailed
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import LOG_TAIL_LINES, MAX_LOG_BYTES, MAX_LOG_MESSAGE_BYTES, MAX_LOG_TAIL_BYTES
from manta_mqtt.protocol.messages import NodeLog, ProtocolError
from manta_mqtt.swarm import load_swarm
from manta_mqtt.transport.mqtt import BrokerAddress

from ..conftest import ROOT, SIGNING_KEY, BrokerUnderTest, NodeProcess

# --- the message ---------------------------------------------------------------------------------


def test_a_node_log_round_trips_as_readable_json() -> None:
    record = NodeLog.make("pi-7", 1795000000.1234, "error", "edge_node", "task failed", "line 1\nline 2", 3)
    payload = record.to_bytes()
    assert json.loads(payload) == {
        "v": 2,
        "node": "pi-7",
        "time": 1795000000.123,
        "level": "error",
        "logger": "edge_node",
        "message": "task failed",
        "tail": "line 1\nline 2",
        "dropped": 3,
    }
    assert NodeLog.parse(payload) == record


def test_empty_tail_and_no_drops_are_left_out() -> None:
    data = json.loads(NodeLog.make("n1", 1.0, "warning", "x", "m").to_bytes())
    assert set(data) == {"v", "node", "time", "level", "logger", "message"}


def test_the_tail_keeps_the_last_lines_then_the_last_bytes() -> None:
    lines = [f"line {i}" for i in range(100)]
    record = NodeLog.make("n1", 1.0, "error", "x", "m", "\n".join(lines))
    assert record.tail.splitlines() == lines[-LOG_TAIL_LINES:]
    wide = NodeLog.make("n1", 1.0, "error", "x", "m", "\n".join(["é" * 500] * 30))
    assert len(wide.tail.encode()) <= MAX_LOG_TAIL_BYTES
    assert wide.tail.endswith("é" * 500)  # the end is where the error is


def test_the_worst_record_within_the_field_bounds_fits_the_payload_bound() -> None:
    """Control characters grow sixfold in JSON: the payload bound still holds them all."""
    record = NodeLog.make("n" * 64, 1.0, "critical", "\x01" * 500, "\x01" * 5000, "\x01" * 50_000, 10**9)
    payload = record.to_bytes()
    assert len(payload) <= MAX_LOG_BYTES
    assert NodeLog.parse(payload) == record
    assert len(record.message.encode()) == MAX_LOG_MESSAGE_BYTES


@pytest.mark.parametrize(
    "change",
    [
        {"level": "shouting"},
        {"node": "a/b"},
        {"time": -1},
        {"dropped": -1},
        {"message": "x" * (MAX_LOG_MESSAGE_BYTES + 1)},
        {"tail": "x" * (MAX_LOG_TAIL_BYTES + 1)},
        {"v": 1},
        {"v": 3},
        {"node": "pi.7"},
    ],
)
def test_a_reader_refuses_what_is_not_a_bounded_v2_record(change: dict[str, object]) -> None:
    data = json.loads(NodeLog.make("n1", 1.0, "warning", "x", "m").to_bytes()) | change
    with pytest.raises(ProtocolError):
        NodeLog.parse(json.dumps(data).encode())


def test_a_reader_refuses_an_oversized_payload_before_decoding() -> None:
    with pytest.raises(ProtocolError, match="bytes"):
        NodeLog.parse(b" " * (MAX_LOG_BYTES + 1))


# --- what the node's handler publishes -----------------------------------------------------------


class FakeLink:
    """What RemoteLog needs of an MqttLink: the connected flag and publish."""

    def __init__(self, connected: bool = True, on_publish: object = None) -> None:
        self.connected = threading.Event()
        if connected:
            self.connected.set()
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.on_publish = on_publish

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.sent.append((topic, payload, qos, retain))
        if callable(self.on_publish):
            self.on_publish()

    def records(self) -> list[NodeLog]:
        return [NodeLog.parse(p) for _, p, _, _ in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def handler(link: FakeLink, **kwargs: object) -> tuple[RemoteLog, logging.Logger]:
    remote = RemoteLog("n1", link, **kwargs)  # type: ignore[arg-type]
    remote.install()
    logger = logging.getLogger("test.remote_log")
    logger.propagate = True
    return remote, logger


def wait_for(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not check():  # type: ignore[operator]
        time.sleep(0.02)


def test_warnings_go_out_on_the_node_log_topic_qos0_not_retained() -> None:
    link = FakeLink()
    remote, logger = handler(link)
    try:
        logger.info("not published: below warning")
        logger.warning("disk %s is full", "/data")
        wait_for(lambda: link.sent)
    finally:
        remote.uninstall()
    assert [(t, q, r) for t, _, q, r in link.sent] == [(topics.node_log("n1"), 0, False)]
    (record,) = link.records()
    assert (record.node, record.level, record.logger, record.message) == (
        "n1",
        "warning",
        logger.name,
        "disk /data is full",
    )
    assert remote.last_error == "disk /data is full"


def test_level_error_leaves_warnings_out_but_they_still_make_last_error() -> None:
    link = FakeLink()
    remote, logger = handler(link, level="error")
    try:
        logger.warning("only a warning")
        logger.error("a real error")
        wait_for(lambda: link.sent)
        time.sleep(0.2)
    finally:
        remote.uninstall()
    assert [r.message for r in link.records()] == ["a real error"]
    assert remote.last_error == "a real error"


def test_nothing_is_published_when_publish_is_false() -> None:
    link = FakeLink()
    remote, logger = handler(link, publish=False)
    try:
        logger.error("kept local")
        time.sleep(0.3)
    finally:
        remote.uninstall()
    assert link.sent == []
    assert remote.last_error == "kept local"


def test_the_rate_limit_drops_and_the_next_record_says_how_many() -> None:
    link, clock = FakeLink(), Clock()
    remote, logger = handler(link, per_minute=6, clock=clock)  # a burst of 6, then one every 10 s
    try:
        for i in range(20):
            logger.warning("flood %d", i)
        wait_for(lambda: len(link.sent) >= 6)
        time.sleep(0.2)
        assert [r.message for r in link.records()] == [f"flood {i}" for i in range(6)]
        clock.now += 10.0  # one token back
        logger.error("after the flood")
        logger.error("no token for this one")
        wait_for(lambda: len(link.sent) >= 7)
        time.sleep(0.2)
    finally:
        remote.uninstall()
    records = link.records()
    assert len(records) == 7
    assert (records[-1].message, records[-1].dropped) == ("after the flood", 14)
    assert all(r.dropped == 0 for r in records[:-1])


def test_a_link_down_never_blocks_the_logging_thread_and_the_queue_is_bounded() -> None:
    link = FakeLink(connected=False)
    remote, logger = handler(link, per_minute=100_000, queue_size=8)
    try:
        started = time.monotonic()
        for i in range(500):
            logger.warning("while offline %d", i)
        logging_took = time.monotonic() - started
        assert link.sent == []
        link.connected.set()  # the link is back: what the queue held goes out
        wait_for(lambda: len(link.sent) >= 8)
        logger.warning("back online")
        wait_for(lambda: any(r.message == "back online" for r in link.records()))
    finally:
        remote.uninstall()
    records = link.records()
    assert len(records) <= 8 + 1  # what it held (queue_size in all), then the last
    assert records[-1].message == "back online"
    assert sum(r.dropped for r in records) + len(records) == 501  # every record sent or counted
    assert logging_took < 30  # it returned at all: a blocking emit would hang here forever


def test_a_publish_that_logs_does_not_recurse() -> None:
    logger = logging.getLogger("test.remote_log.publisher")
    link = FakeLink(on_publish=lambda: logger.error("the publish itself complains"))
    remote, test_logger = handler(link, per_minute=100_000)
    try:
        test_logger.error("one record")
        wait_for(lambda: link.sent)
        time.sleep(0.3)
    finally:
        remote.uninstall()
    assert [r.message for r in link.records()] == ["one record"]


def test_a_traceback_shows_its_exception_and_keeps_the_rest_in_the_tail() -> None:
    traceback = 'Traceback (most recent call last):\n  File "w.py", line 3, in main\nValueError: bad shard\n'
    assert split_message(traceback) == ("ValueError: bad shard", traceback)
    assert split_message("task process exited with code 3\nout 1\nout 2") == (
        "task process exited with code 3",
        "out 1\nout 2",
    )
    link = FakeLink()
    remote, logger = handler(link)
    try:
        try:
            raise KeyError("missing")
        except KeyError:
            logger.exception("while fetching")
        wait_for(lambda: link.sent)
    finally:
        remote.uninstall()
    (record,) = link.records()
    assert record.message == "while fetching" and "KeyError: 'missing'" in record.tail


# --- manta-mqtt logs: what it shows ---------------------------------------------------------------


def test_a_record_is_one_escaped_line_with_its_tail_indented() -> None:
    record = NodeLog.make("pi-7", 0.0, "error", "edge_node", "evil \x1b[2J text", "first\nsecond \x1b]0;x\x07", 2)
    text = format_record(record)
    lines = text.splitlines()
    assert "pi-7 ERROR edge_node: evil \\x1b[2J text" in lines[0] and "[2 earlier record(s) not sent]" in lines[0]
    assert lines[1:] == ["    first", "    second \\x1b]0;x\\x07"]
    assert "\x1b" not in text


def test_records_are_filtered_by_node_level_and_age() -> None:
    record = NodeLog.make("n1", 1000.0, "warning", "x", "m")
    assert wanted(record, "n1", "warning", None, 5000.0)
    assert not wanted(record, "n2", "warning", None, 5000.0)  # its topic names another node
    assert not wanted(record, "n1", "error", None, 5000.0)
    assert not wanted(record, "n1", "warning", 60.0, 5000.0)
    assert wanted(record, "n1", "warning", 60.0, 1030.0)


# --- for real: a node whose task fails, read with manta-mqtt logs ---------------------------------

SWARM = """
from manta_mqtt import Module, Swarm, Task


class Failing(Swarm):
    name = "failing"

    def __init__(self):
        super().__init__()
        self.worker = Task(Module("worker.py"), alias="worker", timeout=60, on_short="fail")

    def execute(self):
        return self.worker()
"""

WORKER = """
import os, sys


def main():
    for i in range(60):
        print(f"reading shard {i}", file=sys.stderr)
    print("shard 59 is corrupt: \\x1b[31mgiving up", file=sys.stderr, flush=True)
    os._exit(3)
"""


def manta(*args: str) -> list[str]:
    return [sys.executable, "-m", "manta_mqtt.cli.main", *args]


def test_a_failed_task_shows_in_manta_mqtt_logs_with_its_stderr_tail(
    mosquitto: BrokerUnderTest, tmp_path: Path
) -> None:
    swarm_dir = tmp_path / "swarm"
    swarm_dir.mkdir()
    (swarm_dir / "swarm.py").write_text(SWARM)
    (swarm_dir / "worker.py").write_text(WORKER)
    node = NodeProcess(tmp_path / "nodes", "pi-logs", mosquitto, {}).start()
    out, err = tmp_path / "logs.out", tmp_path / "logs.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        reader = subprocess.Popen(
            manta("logs", "pi-logs", "--follow", "--broker", mosquitto.url, "--mqtt-version", mosquitto.version),
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
        )
    try:
        wait_for(lambda: "listening on" in err.read_text(), 30)
        assert "listening on manta/v2/nodes/pi-logs/log" in err.read_text()
        options = CoordinatorOptions(
            runs_dir=tmp_path / "runs", min_nodes=1, wait_nodes=30, mqtt_version="5", signing_key=SIGNING_KEY
        )
        swarm = load_swarm(swarm_dir / "swarm.py")
        try:
            state = Coordinator(swarm, BrokerAddress.parse(mosquitto.url), options, ConsoleProgress()).run().state
        except SwarmFailed:
            state = "failed"
        assert state == "failed"
        wait_for(lambda: "giving up" in out.read_text(), 30)
    finally:
        reader.send_signal(signal.SIGINT)
        try:
            code = reader.wait(10)
        except subprocess.TimeoutExpired:
            reader.kill()
            code = reader.wait()
        node.stop()
    text = out.read_text()
    lines = text.splitlines()
    failed = [i for i, line in enumerate(lines) if "pi-logs ERROR" in line or "pi-logs WARNING" in line]
    assert any("worker iteration 0 FAILED" in lines[i] for i in failed), text
    header = next(i for i in failed if "task process exited with code 3" in lines[i])
    tail = lines[header + 1 : header + 1 + LOG_TAIL_LINES]
    assert all(line.startswith("    ") for line in tail), text
    assert tail[-1] == "    shard 59 is corrupt: \\x1b[31mgiving up"  # escaped, not a colour change
    assert tail[-2] == "    reading shard 59" and "reading shard 5\n" not in text  # the tail, bounded
    assert "\x1b" not in text
    assert code == 0, err.read_text()
    assert "pi-logs" in node.output()


def test_manta_mqtt_logs_without_follow_listens_for_seconds_and_says_when_it_saw_nothing(
    mosquitto: BrokerUnderTest,
) -> None:
    done = subprocess.run(
        manta("logs", "--seconds", "1", "--broker", mosquitto.url, "--mqtt-version", mosquitto.version),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "listening on manta/v2/nodes/+/log" in done.stderr and "no log records in 1 s" in done.stderr
