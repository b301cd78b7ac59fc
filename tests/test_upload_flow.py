"""End-to-end flow control of uploads on a real Mosquitto: the coordinator pulls.

Four edge-node processes each upload a 6 MiB result at the same moment, 24 MiB in all, through a
Mosquitto that queues at most 8 MiB toward one client (``max_queued_bytes``) and keeps only two
messages in flight to it. Pushed at once (the nodes' old behaviour), the chunks past that queue
were dropped by the broker and the step waited out its deadline without them. Pulled with
grants, under a 4 MiB window, every result arrives whole, in both iterations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.transport.mqtt import BrokerAddress

from .conftest import SIGNING_KEY, BrokerUnderTest, mosquitto_binary

MiB = 1 << 20
BULK = Path(__file__).parent / "swarms" / "bulk" / "swarm.py"
SMALL_QUEUE = "max_queued_bytes 8388608\nmax_inflight_messages 2\n"


@pytest.mark.mosquitto
@pytest.mark.slow
def test_uploads_larger_than_the_brokers_queue_all_arrive(tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    server = MosquittoProcess(tmp_path / "mosquitto", extra=SMALL_QUEUE, binary=mosquitto_binary()).start()
    ids = ["n1", "n2", "n3", "n4"]
    elements = 6 * MiB // 8  # float64: 6 MiB per node, 24 MiB at once, 3 x the broker's queue
    try:
        start_nodes(BrokerUnderTest("mosquitto", server.url, "5", server.port), ids, {})
        swarm = load_swarm(BULK)
        swarm.globals["elements"] = elements
        options = CoordinatorOptions(
            runs_dir=tmp_path / "runs",
            min_nodes=len(ids),
            wait_nodes=30,
            mqtt_version="5",
            chunk_size=MiB,
            upload_window=4 * MiB,
            grace=10.0,  # the old push waited this long past the task's timeout, then failed
            signing_key=SIGNING_KEY,
        )
        summary = Coordinator(swarm, BrokerAddress.parse(server.url), options, ConsoleProgress()).run()
    finally:
        server.stop()
    broker_log = server.log.read_text(errors="replace")
    assert summary.state == "stopped", summary.reason
    assert summary.rejected == {}
    store = RunStore.open(summary.store_path)
    for iteration in range(2):
        bigs = store.results("big", iteration)[iteration]
        assert sorted(bigs) == ids
        for node, big in bigs.items():
            np.testing.assert_array_equal(big, np.full(elements, iteration + int(node[1:]), dtype=np.float64))
    assert store.results("nodes") == {0: {"coordinator": ids}, 1: {"coordinator": ids}}
    assert all(run["ok"] for run in store.runs()) and len(store.runs()) == 2 * (len(ids) + 1)
    assert "being dropped" not in broker_log
