"""Regression: the coordinator's threads never share its upload receiver.

Before the engine, the main thread swept stalled uploads (``UploadReceiver.sweep``) while paho's
network thread added new ones to the same dict: ``RuntimeError: dictionary changed size during
iteration`` escaped the main loop and ended the run. Now the network thread owns the receiver
and sweeps it itself. This test floods the coordinator with thousands of uploads, opened and
completed all the time, while a real swarm runs, and checks the swarm's exact results; on the old code it
failed with that RuntimeError.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from pathlib import Path

from manta_mqtt import BrokerAddress, Coordinator, CoordinatorOptions, RunStore, load_swarm
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import BlobInfo, sha256
from manta_mqtt.protocol.messages import Chunk
from manta_mqtt.transport.mqtt import MqttLink

from .conftest import SIGNING_KEY, BrokerUnderTest
from .test_e2e_swarm import COUNTER, check_counter_results, numbers


def flood_uploads(address: BrokerAddress, version: str, swarm: str, stop: threading.Event) -> int:
    """Uploads of two chunks each, from fake nodes, all the run long: every first chunk opens
    an upload in the coordinator's receiver and every second one completes (and removes) one
    opened earlier, so the receiver changes size all the time while steps are open."""
    link = MqttLink("uploader", address, version=version, session_expiry=0)
    assert link.start()
    opened: list[tuple[str, BlobInfo, bytes]] = []
    sent = 0
    while not stop.is_set():
        for _ in range(10):  # ~500 chunks/s: thousands in a run, yet no backlog at the broker that
            # would hold the nodes' results back for minutes on a loaded machine
            data = secrets.token_bytes(2048)
            info = BlobInfo(sha256(data), len(data), 1024)
            node = f"fake-{sent % 997}"
            link.publish(topics.upload_chunk(swarm, node, info.sha, 0), Chunk(info, 0, data[:1024]).to_bytes(), qos=0)
            opened.append((node, info, data))
            if len(opened) > 200:
                node, info, data = opened.pop(0)
                chunk = Chunk(info, 1, data[1024:]).to_bytes()
                link.publish(topics.upload_chunk(swarm, node, info.sha, 1), chunk, qos=0)
            sent += 1
        time.sleep(0.02)
    link.stop()
    return sent


def test_uploads_flooding_in_while_the_main_loop_runs(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    ids = ["n1", "n2"]
    start_nodes(mosquitto, ids, {"numbers.npy": numbers(tmp_path)})
    swarm = load_swarm(COUNTER)
    swarm.globals["delay"] = 3.0  # steps stay open while the main loop ticks and uploads pour in
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs", min_nodes=2, wait_nodes=30, mqtt_version=mosquitto.version, signing_key=SIGNING_KEY
    )
    coordinator = Coordinator(swarm, BrokerAddress.parse(mosquitto.url), options, ConsoleProgress())
    stop = threading.Event()
    sent: list[int] = []
    address = BrokerAddress.parse(mosquitto.url)
    flooder = threading.Thread(
        target=lambda: sent.append(flood_uploads(address, mosquitto.version, coordinator.swarm_id, stop))
    )
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads very often: a shared dict would break at once
    flooder.start()
    try:
        summary = coordinator.run()
    finally:
        sys.setswitchinterval(switch)
        stop.set()
        flooder.join(30)
    assert sent and sent[0] > 1000
    assert summary.state == "stopped", summary.reason
    check_counter_results(RunStore.open(summary.store_path), ids, 3)
