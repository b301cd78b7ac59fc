"""A no-op FedAvg round (bench/swarms/noop_fedavg) with real processes, next to its raw paho floor.

N ``edge-node start`` processes and one ``manta-mqtt run`` process on a Mosquitto of our own;
the round time is the median gap between consecutive aggregations (the aggregator records the
time of each), so node start-up and the first fetch are not counted. The coordinator's peak memory
is the largest summed VmRSS of the ``manta-mqtt run`` process and its descendants (the
aggregator runs in a child process), sampled every 50 ms until it exits, reported next to the
model size; the main process's own VmHWM is reported too. The floor (bench_floor.py) runs on the
same broker, with the same bytes, just before the swarm.

    python bench/bench_round.py [--nodes 4] [--mib 1] [--rounds 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import status_kib, tree_rss
from bench_floor import MIB, floor_seconds

from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
SWARM = Path(__file__).resolve().parent / "swarms" / "noop_fedavg" / "swarm.py"


def start_node(
    tmp: Path, node_id: str, url: str, trusted: str, extra: str = "", version: str = "5"
) -> subprocess.Popen[bytes]:
    """An ``edge-node start`` process (one torch thread); ``extra`` is appended to its node.toml."""
    home = tmp / "nodes" / node_id
    home.mkdir(parents=True)
    config = home / "node.toml"
    config.write_text(
        f'[node]\nid = "{node_id}"\ndata_dir = "{home / "state"}"\n[broker]\nurl = "{url}"\nversion = "{version}"\n'
        f'[trust]\nkeys = ["{trusted}"]\n{extra}'
    )
    with (home / "node.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_node.cli", "start", "--config", str(config), "-q"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


def swarm_round(broker: MosquittoProcess, tmp: Path, nodes: int, model_bytes: int, rounds: int) -> dict[str, Any]:
    """Runs the no-op swarm for ``rounds`` rounds on ``nodes`` node processes; round times and peak."""
    key = tmp / "owner.key"
    trusted = OwnerKey.generate().save(key).read_text().strip()
    procs = [start_node(tmp, f"n{i}", broker.url, trusted) for i in range(nodes)]
    summary = tmp / "summary.json"
    command = [sys.executable, "-m", "manta_mqtt.cli.main", "run", str(SWARM), "--broker", broker.url]
    command += ["--mqtt-version", "5", "--min-nodes", str(nodes), "--wait", "300", "--runs-dir", str(tmp / "runs")]
    command += ["--signing-key", str(key), "--summary-json", str(summary)]
    env = {**os.environ, "MANTA_BENCH_ROUNDS": str(rounds), "MANTA_BENCH_MODEL_BYTES": str(model_bytes)}
    hwm_kib = tree_peak_kib = 0
    peak_parts: list[tuple[str, int]] = []
    with (tmp / "coordinator.log").open("ab") as log:
        coordinator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 1800
        while coordinator.poll() is None and time.monotonic() < deadline:
            hwm_kib = max(hwm_kib, status_kib(coordinator.pid, "VmHWM"))
            tree = tree_rss(coordinator.pid)
            if sum(kib for _, kib in tree) > tree_peak_kib:
                tree_peak_kib, peak_parts = sum(kib for _, kib in tree), tree
            time.sleep(0.05)
    finally:  # also on Ctrl-C: no coordinator or node outlives the bench
        for proc in [coordinator, *procs]:
            stop_process(proc)
    if coordinator.returncode != 0 or not summary.exists():
        tail = (tmp / "coordinator.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the swarm run failed (exit {coordinator.returncode}): {tail}")
    store = RunStore.open(json.loads(summary.read_text())["store"])
    clock = sorted(value["coordinator"]["t"] for value in store.results("clock").values())
    store.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(clock)]
    return {
        "round_s": statistics.median(gaps),
        "round_s_all": [round(g, 4) for g in gaps],
        "coordinator_peak_mib": round(tree_peak_kib / 1024, 1),
        "coordinator_hwm_mib": round(hwm_kib / 1024, 1),
        "coordinator_peak_parts": [[comm, round(kib / 1024, 1)] for comm, kib in peak_parts],
    }


def measure(nodes: int, model_bytes: int, rounds: int, floor_repeat: int = 3) -> dict[str, Any]:
    """The floor (median of ``floor_repeat``) and the swarm's round on one fresh broker."""
    with tempfile.TemporaryDirectory() as tmp_name, MosquittoProcess(Path(tmp_name) / "mosquitto") as broker:
        tmp = Path(tmp_name)
        floors = [floor_seconds(broker.port, nodes, model_bytes, tag=f"floor{i}") for i in range(floor_repeat)]
        floor = statistics.median(floors)
        row = swarm_round(broker, tmp, nodes, model_bytes, rounds)
    model_mib = model_bytes / MIB
    return {
        "nodes": nodes,
        "model_mib": model_mib,
        "floor_s": round(floor, 4),
        "floor_s_all": [round(f, 4) for f in floors],
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
        "round_over_floor": round(row["round_s"] / floor, 2),
        "coordinator_peak_over_model": round(row["coordinator_peak_mib"] / model_mib, 2),
        "coordinator_hwm_over_model": round(row["coordinator_hwm_mib"] / model_mib, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--mib", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(measure(args.nodes, args.mib * MIB, args.rounds))


if __name__ == "__main__":
    main()
