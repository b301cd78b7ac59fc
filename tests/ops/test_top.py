"""`manta-mqtt top`: the view folded from messages (no broker), a snapshot of a real site, the
live screen in a real terminal (tmux), and a thousand nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus, SwarmState
from manta_mqtt.tools.top.model import MAX_NODES, RATE_WINDOW, SiteView, node_rows
from manta_mqtt.tools.top.render import screen
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import ROOT, BrokerUnderTest

NOW = 1_800_000_000.0
MANTA = [sys.executable, "-m", "manta_mqtt.cli.main"]


def status(node: str, state: str = "online", heartbeat: float = NOW, **more: object) -> bytes:
    s = NodeStatus(node, state, ["numbers.npy"], heartbeat=heartbeat)  # type: ignore[arg-type]
    for name, value in more.items():
        setattr(s, name, value)
    return s.to_bytes()


def fold(*messages: tuple[str, bytes], now: float = NOW) -> SiteView:
    view = SiteView()
    for topic, payload in messages:
        view.take(topic, payload, len(payload), now)
    return view


def test_states_staleness_filters_and_sorts() -> None:
    view = fold(
        (topics.node_status("b"), status("b", "busy", running="sw/1/worker")),
        (topics.node_status("a"), status("a")),
        (topics.node_status("c"), status("c", heartbeat=NOW - 600)),  # silent for 10 minutes
        (topics.node_status("d"), status("d", "offline", heartbeat=NOW - 600)),  # said goodbye: not stale
        now=NOW - 600,
    )
    view.take(topics.node_status("a"), status("a"), 10, NOW)
    view.take(topics.node_status("b"), status("b", "busy"), 10, NOW)
    assert view.counts(NOW) == {"online": 1, "busy": 1, "stale": 1, "offline": 1}
    assert [r.status.node for r in node_rows(view, NOW)] == ["a", "b", "c", "d"]
    assert [r.status.node for r in node_rows(view, NOW, only="stale")] == ["c"]
    assert [r.status.node for r in node_rows(view, NOW, sort="state")] == ["b", "d", "a", "c"]


def test_a_node_row_shows_its_health() -> None:
    from rich.console import Console

    health = {"cpu": 37.2, "temp": 51.4, "mem_used": 300 << 20, "mem_total": 1 << 30, "disk_free": 5 << 30,
              "uptime": 7200.0, "task_started": NOW - 65, "last_error": "dataset x missing"}  # fmt: skip
    s = NodeStatus("n1", "busy", running="sw/1/worker", agent="manta-mqtt 0.1.0", heartbeat=NOW, **health)  # type: ignore[arg-type]
    view = fold((topics.node_status("n1"), s.to_bytes()))
    console = Console(width=220, record=True, color_system=None)
    console.print(screen(view, NOW, "mqtt://b", sort="cpu", only="all", height=40))
    row = next(line for line in console.export_text().splitlines() if line.lstrip().startswith("n1"))
    for shown in ("busy", "0.1.0", "2h", "37%", "300.0M/1.0G", "5.0G", "51C", "sw/1/worker 1m", "dataset x missing"):
        assert shown in row, (shown, row)


def test_traffic_rates_and_invalid_messages() -> None:
    view = SiteView()
    for second in range(RATE_WINDOW):
        view.take(topics.blob_chunk("sw", "ab" * 32, second), None, 1_000_000, NOW - RATE_WINDOW + second)
    view.take(topics.swarm_state("sw"), b"{not json", 9, NOW)
    rates = view.traffic.rates(NOW)
    assert rates["blob_chunk"] == (1.0, 1_000_000.0) and view.invalid == 1


def test_the_view_is_bounded() -> None:
    view = SiteView()
    for i in range(MAX_NODES + 5):
        view.take(topics.node_status(f"n{i}"), status(f"n{i}"), 100, NOW)
    assert len(view.nodes) == MAX_NODES and "n0" not in view.nodes and f"n{MAX_NODES + 4}" in view.nodes


def test_hostile_text_is_escaped_on_screen() -> None:
    from rich.console import Console

    view = fold((topics.node_status("n1"), status("n1", "busy", running="\x1b[2J[bold]x[/bold]")))
    console = Console(width=200, record=True, color_system=None)
    console.print(screen(view, NOW, "mqtt://b", sort="node", only="all", height=40))
    text = console.export_text()
    assert "\x1b" not in text and "[bold]x[/bold]" in text


def publish_site(broker: BrokerUnderTest, count: int) -> None:
    link = MqttLink("site", BrokerAddress.parse(broker.url), version=broker.version, session_expiry=0)
    assert link.start(timeout=5)
    now = time.time()
    for i in range(count):
        state = "busy" if i % 3 == 0 else "online"
        link.publish(topics.node_status(f"pi-{i:04d}"), status(f"pi-{i:04d}", state, heartbeat=now), retain=True)
    swarm = SwarmState("mnist-1", "mnist", "running", 2, "worker", 1, 3, {"val_acc": 0.91}, "", now)
    link.publish(topics.swarm_state("mnist-1"), swarm.to_bytes(), retain=True)
    link.stop()


def test_a_snapshot_of_a_thousand_nodes(mosquitto: BrokerUnderTest) -> None:
    publish_site(mosquitto, 1000)
    started = time.monotonic()
    result = subprocess.run(
        [*MANTA, "top", "--broker", mosquitto.url, "--once", "--filter", "busy"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "nodes: 1000 (334 busy, 666 online) - swarms: 1" in lines[0], lines[0]
    assert "nodes: 334 shown (busy, by node)" in result.stdout
    assert sum(1 for line in lines if line.lstrip().startswith("pi-")) == 334
    assert "mnist-1" in result.stdout and "worker 1/3" in result.stdout and "val_acc=0.91" in result.stdout
    assert time.monotonic() - started < 30


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_the_live_screen_in_a_real_terminal(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    publish_site(mosquitto, 12)
    socket = f"manta-top-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    command = " ".join([*MANTA, "top", "--broker", mosquitto.url, "--refresh", "0.5"])
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "170", "-y", "50", "-s", "top", command], check=True, env=env, cwd=ROOT
    )

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True, text=True).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            shown = pane()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never shown; the screen:\n{pane()}")

    try:
        shown = wait_for("nodes: 12 (4 busy, 8 online)")
        assert "pi-0011" in shown and "mnist-1" in shown and "q quit" in shown
        subprocess.run([*tmux, "send-keys", "-t", "top", "f"], check=True)
        shown = wait_for("nodes: 8 shown (online, by node)")
        assert "pi-0000" not in shown  # busy, filtered out
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run([*tmux, "has-session", "-t", "top"], capture_output=True)
            if alive.returncode != 0:
                break  # the command ended, so did its session
            time.sleep(0.2)
        else:
            raise AssertionError(f"top did not quit on q:\n{pane()}")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
