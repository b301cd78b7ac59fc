"""Node health in the status heartbeat: read from /proc and /sys on this machine and on made-up
trees with known numbers, carried by NodeStatus (old statuses still parse), and published by a
real edge node with its heartbeat interval."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_node.health import HealthProbe, TaskClock
from manta_mqtt.coordinator.engine import StatusChanged, Timing
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import MAX_STATUS_ERROR_LENGTH
from manta_mqtt.protocol.messages import NodeStatus, ProtocolError
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import BrokerUnderTest, NodeProcess
from ..engine_world import World, fl_graph, only

# --- this machine ---------------------------------------------------------------------------------


def test_this_machine_reads_plausibly(tmp_path: Path) -> None:
    probe = HealthProbe(tmp_path)
    sum(i * i for i in range(300_000))  # some CPU time between the two samples
    time.sleep(0.2)
    health = probe.read()
    assert health.cpu is not None and 0.0 <= health.cpu <= 100.0
    assert health.load1 is not None and health.load1 >= 0.0
    assert health.mem_total and health.mem_used is not None and 0 < health.mem_used <= health.mem_total
    assert health.rss is not None and 10 * 2**20 < health.rss < health.mem_total  # a Python process
    assert health.disk_total and health.disk_free is not None and 0 < health.disk_free <= health.disk_total
    assert health.uptime >= 0.2
    if not list(Path("/sys/class/thermal").glob("thermal_zone*/temp")):
        assert health.temp is None  # this box has no sensor (a container, a VM)
    else:
        assert health.temp is not None and -40 < health.temp < 130


def test_a_data_dir_not_created_yet_reads_its_parents_filesystem(tmp_path: Path) -> None:
    health = HealthProbe(tmp_path / "not" / "yet").read()
    assert health.disk_free is not None and health.disk_total is not None


# --- made-up /proc and /sys trees: exact numbers --------------------------------------------------


def fake_proc(root: Path, stat: str, meminfo: str = "", loadavg: str = "0.42 0.30 0.20 1/99 1234\n") -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(stat)
    (proc / "meminfo").write_text(meminfo)
    (proc / "loadavg").write_text(loadavg)
    (proc / "self" / "statm").write_text("5000 300 100 1 0 200 0\n")
    return proc


def test_cpu_is_the_busy_share_of_the_interval_since_the_previous_reading(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    proc = fake_proc(tmp_path, "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    probe = HealthProbe(tmp_path, proc=proc, thermal=tmp_path / "none")
    (proc / "stat").write_text("cpu  130 0 120 730 120 0 0 0 50 0\n")  # +50 busy, +30 idle, +20 iowait
    assert probe.read().cpu == 50.0
    assert probe.read().cpu is None  # no tick since: nothing to say
    (proc / "stat").write_text("cpu  230 0 120 730 120 0 0 0 50 0\n")
    assert probe.read().cpu == 100.0


def test_memory_load_and_rss(tmp_path: Path) -> None:
    meminfo = "MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  400 kB\nBuffers: 50 kB\n"
    proc = fake_proc(tmp_path, "cpu  1 0 1 1 0 0 0 0\n", meminfo)
    health = HealthProbe(tmp_path, proc=proc, thermal=tmp_path / "none").read()
    assert (health.mem_used, health.mem_total) == (600 * 1024, 1000 * 1024)
    assert health.load1 == 0.42
    assert health.rss is not None and health.rss == 300 * (health.rss // 300)  # pages, times the page size


def test_memory_without_memavailable_counts_caches_as_free(tmp_path: Path) -> None:
    meminfo = "MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers:  50 kB\nCached:  250 kB\n"
    proc = fake_proc(tmp_path, "cpu  1 0 1 1\n", meminfo)
    health = HealthProbe(tmp_path, proc=proc, thermal=tmp_path / "none").read()
    assert (health.mem_used, health.mem_total) == (600 * 1024, 1000 * 1024)


def test_no_proc_at_all_gives_nothing_rather_than_an_error(tmp_path: Path) -> None:
    health = HealthProbe(tmp_path, proc=tmp_path / "missing", thermal=tmp_path / "missing").read()
    assert (health.cpu, health.load1, health.mem_used, health.mem_total, health.rss, health.temp) == (None,) * 6
    assert health.disk_free is not None  # statvfs, not /proc


def zone(thermal: Path, n: int, kind: str, millidegrees: str) -> None:
    folder = thermal / f"thermal_zone{n}"
    folder.mkdir(parents=True)
    (folder / "type").write_text(kind + "\n")
    (folder / "temp").write_text(millidegrees + "\n")


def test_the_soc_zone_is_preferred_to_other_sensors(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal"
    zone(thermal, 0, "acpitz", "30000")
    zone(thermal, 1, "cpu-thermal", "61234")
    zone(thermal, 2, "broken", "n/a")
    assert HealthProbe(tmp_path, thermal=thermal).read().temp == 61.2


def test_any_readable_zone_when_none_names_the_soc_and_below_zero_is_fine(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal"
    zone(thermal, 0, "acpitz", "-5500")
    assert HealthProbe(tmp_path, thermal=thermal).read().temp == -5.5


def test_the_task_clock_times_each_job_from_when_it_is_first_seen() -> None:
    now = [100.0]
    clock = TaskClock(lambda: now[0])
    job, other = object(), object()
    assert clock.started(job) == 100.0
    now[0] = 130.0
    assert clock.started(job) == 100.0
    assert clock.started(other) == 130.0
    assert clock.started(None) is None
    assert clock.started(other) == 130.0  # after an idle moment, a new start


# --- the status message ---------------------------------------------------------------------------

HEALTHY = NodeStatus(
    "pi-7",
    "busy",
    ["a.npz"],
    1795000000000,
    "sw/3/worker",
    {},
    "manta-mqtt 0.3.1",
    1795000123.456,
    interval=30.0,
    uptime=3600.5,
    cpu=12.5,
    load1=0.7,
    mem_used=300_000_000,
    mem_total=1_000_000_000,
    rss=50_000_000,
    disk_free=2_000_000_000,
    disk_total=30_000_000_000,
    temp=-3.5,
    task_started=1795000100.0,
    last_error="ValueError: bad shard",
)


def test_health_round_trips_in_readable_json() -> None:
    payload = HEALTHY.to_bytes()
    data = json.loads(payload)
    assert data["cpu"] == 12.5 and data["interval"] == 30.0 and data["last_error"] == "ValueError: bad shard"
    assert NodeStatus.parse(payload) == HEALTHY
    assert HEALTHY.version == "0.3.1"


def test_unknown_health_is_left_out_and_a_status_without_it_still_parses() -> None:
    plain = NodeStatus("n1", "online", agent="manta-mqtt 0.1.0")
    assert not set(NodeStatus.HEALTH) & set(json.loads(plain.to_bytes()))
    old = b'{"v": 2, "node": "n1", "state": "online", "agent": "manta-mqtt 0.1.0"}'
    status = NodeStatus.parse(old)
    assert all(getattr(status, name) is None for name in NodeStatus.HEALTH)
    assert NodeStatus.parse(json.dumps(json.loads(old) | {"cpu": None, "temp": None}).encode()) == status
    assert NodeStatus("n1", "online").version == ""


@pytest.mark.parametrize(
    "change",
    [{"cpu": 150}, {"cpu": -1}, {"mem_used": -1}, {"rss": 1.5}, {"temp": 1e6}, {"interval": "30"}, {"last_error": 3}],
)
def test_health_out_of_range_is_refused(change: dict[str, object]) -> None:
    data = json.loads(HEALTHY.to_bytes()) | change
    with pytest.raises(ProtocolError):
        NodeStatus.parse(json.dumps(data).encode())


def test_a_nan_temperature_is_refused() -> None:
    with pytest.raises(ProtocolError):
        NodeStatus.parse(HEALTHY.to_bytes().replace(b'"temp": -3.5', b'"temp": NaN'))


def test_a_long_last_error_is_cut() -> None:
    data = json.loads(HEALTHY.to_bytes()) | {"last_error": "x" * 5000}
    assert NodeStatus.parse(json.dumps(data).encode()).last_error == "x" * MAX_STATUS_ERROR_LENGTH


# --- the coordinator's stale rule: max(--stale-after, 3 x the status's interval) ------------------


def slow_heartbeat(world: World, node: str, interval: float | None, after: float = 0.0) -> list[act.Action]:
    return world.feed(StatusChanged(NodeStatus(node, "online", ["numbers.npy"], 1, interval=interval)), after)


def test_a_node_with_a_long_heartbeat_is_stale_after_3_of_its_intervals_not_before() -> None:
    world = World(fl_graph(quorum=1), Timing(grace=10.0, reconnect_grace=5.0, min_nodes=2, stale_after=30.0))
    world.start()
    slow_heartbeat(world, "n1", 10.0)
    slow_heartbeat(world, "n2", 20.0)  # a node told to save power: a heartbeat every 20 s
    world.result("n1", after=1.0)
    for _ in range(5):
        slow_heartbeat(world, "n1", 10.0, after=9.0)  # n1 keeps talking; n2 is silent from 1000 s
    assert world.engine.next_timer() == 1000.0 + 60.0  # 3 x 20 s, not --stale-after's 30 s
    assert not only(world.tick(9.0), act.RecordRun)  # at 1055 s: silent for 55 s, not yet stale
    out = world.tick(5.0)
    assert act.RecordRun(0, "worker", "n2", False, "no status from the node for 60 s", 0.0) in out


def test_a_short_interval_does_not_make_a_node_stale_sooner_than_stale_after() -> None:
    world = World(fl_graph(quorum=1), Timing(grace=10.0, reconnect_grace=5.0, min_nodes=2, stale_after=30.0))
    world.start()
    slow_heartbeat(world, "n1", 1.0)
    slow_heartbeat(world, "n2", 1.0)
    world.result("n1", after=1.0)
    assert world.engine.next_timer() == 1030.0
    out = world.tick(29.0)
    assert act.RecordRun(0, "worker", "n2", False, "no status from the node for 30 s", 0.0) in out


# --- for real: a node publishes its health every interval ---------------------------------------


def test_a_node_publishes_its_health_and_interval_with_each_heartbeat(
    mosquitto: BrokerUnderTest, tmp_path: Path
) -> None:
    node = NodeProcess(tmp_path / "nodes", "pi-health", mosquitto, {})
    node.config.write_text(node.config.read_text().replace("[node]\n", "[node]\nheartbeat = 0.5\n"))
    statuses: list[NodeStatus] = []
    link = MqttLink("health-reader", BrokerAddress.parse(mosquitto.url), version=mosquitto.version, session_expiry=0)
    link.route(topics.node_status("pi-health"), lambda _t, payload, _r: statuses.append(NodeStatus.parse(payload)))
    assert link.start()
    assert link.subscribe(topics.node_status("pi-health"), qos=0, wait=10)
    node.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([s for s in statuses if s.state == "online"]) < 3:
            time.sleep(0.05)
    finally:
        node.stop()
        time.sleep(0.5)
        link.stop()
    online = [s for s in statuses if s.state == "online"]
    assert len(online) >= 3, node.output()
    last = online[-1]
    assert last.interval == 0.5
    assert last.version and last.agent.endswith(last.version)
    assert last.cpu is not None and 0 <= last.cpu <= 100
    assert last.mem_total and last.mem_used is not None and last.mem_used <= last.mem_total
    assert last.rss and last.disk_total and last.disk_free is not None and last.disk_free <= last.disk_total
    assert last.uptime is not None and last.uptime > online[0].uptime  # type: ignore[operator]
    assert last.load1 is not None and last.task_started is None
    assert statuses[-1].state == "offline"  # a clean stop publishes the offline status
