"""Warm processes for coordinator-placed tasks: the counter swarm's aggregator runs once per
iteration on the coordinator, in one process kept for the whole swarm (``manta-mqtt run``'s
default), or in a fresh process each time with ``--no-warm-tasks``; none is left when it ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.runtime import executor
from manta_mqtt.runtime.reuse import ReuseSettings
from manta_mqtt.swarm import load_swarm
from manta_mqtt.transport.mqtt import BrokerAddress

from .conftest import SIGNING_KEY, BrokerUnderTest
from .test_e2e_swarm import COUNTER, numbers
from .test_runtime_pool import gone


@pytest.mark.parametrize(("warm", "processes"), [(True, 1), (False, 3)], ids=["warm", "off"])
def test_the_aggregator_process_is_kept_for_the_swarm(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    warm: bool,
    processes: int,
) -> None:
    started: list[executor.TaskProcess] = []
    spawn = executor.TaskProcess.__init__

    def recording(self: executor.TaskProcess, *args: object, **kwargs: object) -> None:
        spawn(self, *args, **kwargs)  # type: ignore[arg-type]
        started.append(self)

    monkeypatch.setattr(executor.TaskProcess, "__init__", recording)
    start_nodes(mosquitto, ["n1"], {"numbers.npy": numbers(tmp_path)})
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs",
        min_nodes=1,
        wait_nodes=30,
        mqtt_version=mosquitto.version,
        signing_key=SIGNING_KEY,
        task_reuse=ReuseSettings(enabled=warm),
    )
    summary = Coordinator(load_swarm(COUNTER), BrokerAddress.parse(mosquitto.url), options, ConsoleProgress()).run()
    assert summary.state == "stopped" and summary.iterations == 3, summary.reason
    assert len(started) == processes  # the nodes' tasks run in the node processes, not here
    assert [p.runs for p in started] == ([3] if warm else [1, 1, 1])
    assert all(gone(p.pid) for p in started)  # the swarm's end took them along
