"""`manta-mqtt swarms` and `manta-mqtt stop` against a real Mosquitto: what the broker retains
about swarms (their states: protocol v2 retains no blob), pruning what ended, and an operator's
stop request reaching a coordinator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import SwarmControl, SwarmState
from manta_mqtt.tools import fleet
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import BrokerUnderTest

MANTA = [sys.executable, "-m", "manta_mqtt.cli.main"]


def manta(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MANTA, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=dict(os.environ))


def link_to(broker: BrokerUnderTest, name: str) -> MqttLink:
    link = MqttLink(name, BrokerAddress.parse(broker.url), version=broker.version, session_expiry=0)
    assert link.start(timeout=5)
    return link


def test_swarms_lists_newest_first_and_prunes_what_ended(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    now = time.time()
    coordinator = link_to(mosquitto, "coord")
    for swarm, state, updated in [("live-1", "running", now - 5), ("done-1", "completed", now - 3600),
                                  ("gone-1", "running", now - 3 * 86400)]:  # fmt: skip
        message = SwarmState(swarm, "demo", state, 4, "worker", 1, 3, {"acc": 0.9}, "", updated)
        coordinator.publish(topics.swarm_state(swarm), message.to_bytes(), retain=True)
    coordinator.stop()

    listed = manta("swarms", "--broker", mosquitto.url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["SWARM", "STATE", "ITER", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == ["live-1", "done-1", "gone-1"]
    assert lines[2].split()[1:4] == ["completed", "4", "1h"] and "acc=0.9" in lines[2]

    pruned = manta("swarms", "--broker", mosquitto.url, "--prune", cwd=tmp_path)
    assert "pruned 1 swarm(s)" in pruned.stdout
    with fleet.connected(BrokerAddress.parse(mosquitto.url), "5", "check") as link:
        left = fleet.retained(link, f"{topics.ROOT}/swarms/#")
    assert sorted(left) == [topics.swarm_state("gone-1"), topics.swarm_state("live-1")]  # nothing of done-1

    old = json.loads(
        manta("swarms", "--broker", mosquitto.url, "--prune", "--older-than", "86400", "--json", cwd=tmp_path).stdout
    )
    assert [(s["swarm"], s["pruned"]) for s in old] == [("live-1", False), ("gone-1", True)]


def test_stop_reaches_the_coordinator_and_reports_the_final_state(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    coordinator = link_to(mosquitto, "coord")
    running = SwarmState("sw-1", "demo", "running", 2, "worker", 0, 2, {}, "", time.time())
    coordinator.publish(topics.swarm_state("sw-1"), running.to_bytes(), retain=True)
    asked: list[SwarmControl] = []

    def on_control(_topic: str, payload: bytes, _retained: bool) -> None:  # what a coordinator does
        request = SwarmControl.parse(payload)
        asked.append(request)
        final = SwarmState("sw-1", "demo", "stopped", 2, reason=request.reason, updated=time.time())
        coordinator.publish(topics.swarm_state("sw-1"), final.to_bytes(), retain=True)

    coordinator.route(topics.swarm_control("sw-1"), on_control)
    coordinator.subscribe(topics.swarm_control("sw-1"), wait=5)
    try:
        stopped = manta("stop", "sw-1", "--broker", mosquitto.url, "--reason", "enough", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "swarm sw-1 stopped: enough"
        assert [(a.command, a.reason) for a in asked] == [("stop", "enough")]
        again = manta("stop", "sw-1", "--broker", mosquitto.url, cwd=tmp_path)
        assert again.stdout.strip() == "swarm sw-1 had already ended: stopped enough" and len(asked) == 1
    finally:
        coordinator.stop()


def test_stop_without_a_coordinator_says_so(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    result = manta("stop", "nobody-1", "--broker", mosquitto.url, "--wait", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert "no answer from the coordinator of nobody-1 within 1 s" in result.stderr
