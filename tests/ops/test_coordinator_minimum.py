"""``--min-nodes`` is a minimum: not met within ``--wait``, the run fails before it starts (exit
4) in one line naming who is online and why the others may not run, and leaves nothing behind:
no run folder, no retained state. ``--start-with-fewer`` starts anyway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from manta_mqtt.tools import fleet
from manta_mqtt.transport.mqtt import BrokerAddress

from ..conftest import BrokerUnderTest
from .test_coordinator_signals import RunProcess, counter_copy, numbers, run_args


def test_min_nodes_not_met_exits_4_and_leaves_nothing(
    mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes: Any
) -> None:
    start_nodes(mosquitto, ["n1", "n2"], numbers(tmp_path))
    np.save(tmp_path / "other.npy", np.arange(3))
    start_nodes(mosquitto, ["nodata"], {"other.npy": tmp_path / "other.npy"})
    runs = tmp_path / "runs"
    swarm = counter_copy(tmp_path, "swarm", rounds=1)
    run = RunProcess(tmp_path, "run", run_args(swarm, mosquitto, runs, "--min-nodes", "5", "--wait", "4"))
    assert run.wait(60) == 4, run.stderr()
    out = run.stdout()
    assert (
        "swarm failed after 0 iteration(s): only 2 of 5 eligible node(s) online within 4 s (n1, n2); "
        "not eligible: nodata (lacks numbers.npy) (--start-with-fewer starts anyway)"
    ) in out, out
    assert "Traceback" not in out + run.stderr()
    assert not any(runs.iterdir())
    with fleet.connected(BrokerAddress.parse(mosquitto.url), mosquitto.version, "test") as link:
        assert fleet.swarm_states(link) == []

    fewer = RunProcess(
        tmp_path, "fewer", run_args(swarm, mosquitto, runs, "--min-nodes", "5", "--wait", "2", "--start-with-fewer")
    )
    assert fewer.wait(60) == 0, fewer.stderr()
    assert "only 2 of 5 node(s) online; starting anyway" in fewer.stdout()
    assert "not eligible for worker: nodata (lacks numbers.npy)" in fewer.stdout()
    assert len(list(runs.iterdir())) == 1
