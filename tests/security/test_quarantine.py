"""A compromised node whose result makes the aggregator raise: with ``on_error="quarantine"``
the coordinator finds it, sets it aside, and the swarm goes on with the others' results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from manta_mqtt import BrokerAddress, Coordinator, CoordinatorOptions, RunStore, load_swarm
from manta_mqtt.coordinator.progress import ConsoleProgress

from ..conftest import SIGNING_KEY, BrokerUnderTest
from ..test_e2e_swarm import COUNTER, numbers


def test_a_poisoned_result_is_quarantined_and_the_swarm_goes_on(
    amqtt_broker: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    ids = ["n1", "n2", "n3"]
    start_nodes(amqtt_broker, ids, {"numbers.npy": numbers(tmp_path)})
    swarm = load_swarm(COUNTER)
    swarm.globals["poison"] = "n2"
    swarm.aggregator.on_error = "quarantine"  # type: ignore[attr-defined]
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs", min_nodes=3, wait_nodes=30, mqtt_version="3.1.1", signing_key=SIGNING_KEY
    )
    summary = Coordinator(swarm, BrokerAddress.parse(amqtt_broker.url), options, ConsoleProgress()).run()
    assert summary.state == "stopped", summary.reason
    store = RunStore.open(summary.store_path)
    quarantined = store.quarantined()
    assert [(q["iteration"], q["task"], q["node"]) for q in quarantined] == [(0, "aggregator", "n2")]
    assert "arrived wrong" in quarantined[0]["error"]
    vals = store.results("val")
    assert sorted(vals) == [0, 1, 2]
    assert sorted(vals[1]) == sorted(vals[2]) == ["n1", "n3"]  # n2 was asked for nothing more
    np.testing.assert_array_equal(store.global_value("weights"), np.full(store.global_value("size"), 3.0))
    assert store.results("metrics")[0] == {"coordinator": {"x": 1, "nodes": 2}}  # the aggregator saw n1 and n3
