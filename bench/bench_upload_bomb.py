"""The coordinator's memory under the upload bomb of the security review: upload chunks of 1 KiB
that each declare a 1 GiB blob (before: 6 of them took a coordinator from 46 MB to 6.2 GB).

    python bench/bench_upload_bomb.py [--bombs 6] [--flood 10000]

A real coordinator process (``manta-mqtt run`` of the counter swarm, waiting for nodes that never
come) on a Mosquitto of its own; an attacker publishes ``--bombs`` such chunks from one node id,
then ``--flood`` more from as many fake node ids. Prints the coordinator's RSS and its peak
(VmHWM) after each stage.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write

from manta_mqtt import BrokerAddress
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import BlobInfo
from manta_mqtt.protocol.messages import Chunk
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.processes import stop_process
from manta_mqtt.transport.mqtt import MqttLink

ROOT = Path(__file__).resolve().parent.parent


def memory(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def bomb(link: MqttLink, swarm: str, node: str, i: int) -> None:
    sha = hashlib.sha256(f"bomb-{node}-{i}".encode()).hexdigest()
    chunk = Chunk(BlobInfo(sha, 1 << 30, 1024), 0, b"\x00" * 1024)  # 1 KiB that claims 1 GiB
    link.publish(topics.upload_chunk(swarm, node, sha, 0), chunk.to_bytes(), qos=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bombs", type=int, default=6)
    parser.add_argument("--flood", type=int, default=10_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mosquitto") as broker:
        command = [sys.executable, "-m", "manta_mqtt.cli.main", "run", str(ROOT / "tests/swarms/counter/swarm.py")]
        command += ["--broker", broker.url, "--min-nodes", "1", "--wait", "600", "--runs-dir", f"{tmp}/runs"]
        coordinator = subprocess.Popen(
            [*command, "--mqtt-version", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # the swarm id is random: learn it from its retained state
        attacker = MqttLink("attacker", BrokerAddress.parse(broker.url), version="5", session_expiry=0)
        found: list[str] = []
        attacker.route("manta/v2/swarms/+/state", lambda t, p, r: found.append(topics.parse(t).swarm or ""))
        assert attacker.start() and attacker.subscribe("manta/v2/swarms/+/state", wait=5)
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            time.sleep(0.1)
        swarm = found[0]
        time.sleep(1.0)
        stages = [("idle, waiting for nodes", 0, 0), (f"{args.bombs} bombs from one node", args.bombs, 1)]
        stages.append((f"+{args.flood} bombs from {args.flood} node ids", args.flood, args.flood))
        sent = 0
        for name, count, nodes in stages:
            for i in range(count):
                bomb(attacker, swarm, f"evil-{i % nodes}" if nodes > 1 else "evil", sent + i)
            sent += count
            attacker.flush(60)
            time.sleep(2.0)  # let the coordinator's network thread take them all
            row = {"stage": name, **{k: round(v, 1) for k, v in memory(coordinator.pid).items()}}
            print(row)
            rows.append(row)
        attacker.stop()
        stop_process(coordinator)
    write("upload_bomb", rows)


if __name__ == "__main__":
    main()
