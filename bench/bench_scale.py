"""How the coordinator scales with the number of nodes: a ladder of simulated fleets.

For each N: a Mosquitto of our own, N simulated nodes (bench/simnodes.py: real MQTT
connections and real protocol messages, ``PER_PROCESS`` nodes per process) and one real
``manta-mqtt run`` process (signed assignments, as bench_round.py starts it) running
bench/swarms/noop_fedavg with a tiny model for ``rounds`` rounds. Measured:

- ``round_s``: the median gap between consecutive aggregations (the aggregator records the time
  of each), so start-up and the first fetch of the code are not counted;
- ``results_per_s``: results the coordinator recorded per second during a worker step (from
  the ``at`` column of the run store), median over iterations;
- ``cpu_ms_per_node_iteration``: the coordinator's CPU with that of every process it started (the
  aggregator's task process, kept warm between rounds, and its sentinel), live, exited or reaped,
  between the first and the last aggregation, divided by N x the rounds between them. Sampled
  every 0.1 s from /proc/*/stat by ``_common.TreeCpu``: utime + stime + cutime + cstime of each
  process of the tree, read again when a child was reaped during the read (otherwise a task
  process reaped between the read of the coordinator's cutime and its own is in neither: that
  made this figure negative at 16 nodes, where the aggregator's exit, about 0.2 s of CPU, falls
  next to the last aggregation), and never decreasing;
- ``own_cpu_ms_per_node_iteration``: the same for the coordinator process alone (utime + stime).

The summary gives ``max_nodes_one_round`` (the largest N whose run completed), the CPU per node
at the smallest and largest N, and their ratio (flat is 1.0).

    python bench/bench_scale.py [--nodes 16,100,250,500,1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import TreeCpu, write

from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
SWARM = Path(__file__).resolve().parent / "swarms" / "noop_fedavg" / "swarm.py"
SIMNODES = Path(__file__).resolve().parent / "simnodes.py"
LADDER = [16, 100, 250, 500, 1000, 2000]
QUICK_LADDER = [16, 100, 250, 500]
PER_PROCESS = 250  # simulated nodes per process
MODEL_BYTES = 1024  # a tiny model: the bench measures the coordinator, not the bytes
#: Every process runs this tree's code (the simulated nodes' folder is not on their path otherwise).
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def raise_open_files(needed: int) -> None:
    """Mosquitto (which inherits our limits) holds a socket per node: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_fleet(tmp: Path, url: str, nodes: int) -> list[subprocess.Popen[bytes]]:
    """The simulated nodes, ``PER_PROCESS`` per process; returns once every one is connected."""
    procs = []
    for first in range(0, nodes, PER_PROCESS):
        count = min(PER_PROCESS, nodes - first)
        command = [sys.executable, str(SIMNODES), "--broker", url, "--first", str(first), "--count", str(count)]
        log = (tmp / f"sim{first}.log").open("wb")
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=ENV))
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("ready"):
            raise RuntimeError(f"a simulated fleet did not start: {line!r}")
    return procs


def step_rates(store_path: Path) -> list[float]:
    """Results recorded per second during each worker step (one result per node and step)."""
    db = sqlite3.connect(store_path / "index.sqlite")
    rows = db.execute(
        "SELECT iteration, MIN(at), MAX(at), COUNT(*) FROM results WHERE task = 'worker' GROUP BY iteration"
    ).fetchall()
    db.close()
    return [(count - 1) / (last - first) for _, first, last, count in rows if count > 1 and last > first]


def run_rung(nodes: int, rounds: int, timeout: float) -> dict[str, Any]:
    """One N: the swarm on N simulated nodes; its figures (``completed`` False if it did not end well)."""
    raise_open_files(nodes + 256)
    with tempfile.TemporaryDirectory() as tmp_name, MosquittoProcess(Path(tmp_name) / "mosquitto") as broker:
        tmp = Path(tmp_name)
        key = tmp / "owner.key"
        OwnerKey.generate().save(key)
        fleet = start_fleet(tmp, broker.url, nodes)
        summary = tmp / "summary.json"
        command = [sys.executable, "-m", "manta_mqtt.cli.main", "run", str(SWARM), "--broker", broker.url]
        command += ["--mqtt-version", "5", "--min-nodes", str(nodes), "--wait", "300", "--runs-dir", str(tmp / "runs")]
        command += ["--signing-key", str(key), "--summary-json", str(summary)]
        env = {**ENV, "MANTA_BENCH_ROUNDS": str(rounds), "MANTA_BENCH_MODEL_BYTES": str(MODEL_BYTES)}
        samples: list[tuple[float, float, float]] = []  # (unix time, its own CPU s, with its descendants')
        started = time.monotonic()
        with (tmp / "coordinator.log").open("ab") as log:
            coordinator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        tree = TreeCpu(coordinator.pid)
        try:
            while coordinator.poll() is None and time.monotonic() - started < timeout:
                cpu = tree.sample()
                if cpu is not None:
                    samples.append((time.time(), *cpu))
                time.sleep(0.1)
        finally:  # also on Ctrl-C: no coordinator or simulated node outlives the bench
            for proc in [coordinator, *fleet]:
                stop_process(proc)
        elapsed = time.monotonic() - started
        if coordinator.returncode != 0 or not summary.exists():
            tail = (tmp / "coordinator.log").read_text(errors="replace")[-1500:]
            print(f"N={nodes}: the run did not complete (exit {coordinator.returncode}): {tail}", file=sys.stderr)
            return {"nodes": nodes, "completed": False, "wall_s": round(elapsed, 1)}
        store_path = Path(json.loads(summary.read_text())["store"])
        store = RunStore.open(store_path)
        clock = sorted(value["coordinator"]["t"] for value in store.results("clock").values())
        store.close()
        rates = step_rates(store_path)
    gaps = [later - earlier for earlier, later in itertools.pairwise(clock)]
    own, total = cpu_between(samples, clock[0], clock[-1])
    return {
        "nodes": nodes,
        "completed": True,
        "rounds": len(clock),
        "round_s": round(statistics.median(gaps), 3),
        "round_s_all": [round(g, 3) for g in gaps],
        "results_per_s": round(statistics.median(rates), 1) if rates else None,
        "cpu_s_per_round": round(total / len(gaps), 3),
        "own_cpu_s_per_round": round(own / len(gaps), 3),
        "cpu_ms_per_node_iteration": round(1000 * total / (nodes * len(gaps)), 3),
        "own_cpu_ms_per_node_iteration": round(1000 * own / (nodes * len(gaps)), 3),
        "coordinator_cpu_s": round(samples[-1][2], 2) if samples else None,
        "wall_s": round(elapsed, 1),
    }


def cpu_between(samples: list[tuple[float, float, float]], start: float, end: float) -> tuple[float, float]:
    """(own, with descendants) CPU seconds used between two wall-clock times (the first samples at or
    past each; the last sample for a time past them all). Never negative: both series are monotonic."""
    first = next((s for s in samples if s[0] >= start), samples[-1])
    last = next((s for s in samples if s[0] >= end), samples[-1])
    return last[1] - first[1], last[2] - first[2]


def measure(ladder: list[int], rounds: int = 3, timeout: float = 900.0) -> dict[str, Any]:
    """The ladder, smallest N first; stops at the first N that does not complete."""
    rows = []
    for nodes in ladder:
        row = run_rung(nodes, rounds, timeout)
        print(row, flush=True)
        rows.append(row)
        if not row["completed"]:
            break
    done = [r for r in rows if r["completed"]]
    out: dict[str, Any] = {"rows": rows, "max_nodes_one_round": max((r["nodes"] for r in done), default=0)}
    if done:
        small, large = done[0], done[-1]
        for row in (small, large):
            out[f"coordinator_cpu_per_node_ms_{row['nodes']}n"] = row["cpu_ms_per_node_iteration"]
            out[f"coordinator_own_cpu_per_node_ms_{row['nodes']}n"] = row["own_cpu_ms_per_node_iteration"]
        out["coordinator_cpu_per_node_ratio"] = ratio(large, small, "cpu_ms_per_node_iteration")
    if len(done) >= 3:  # what one more node costs a round, at the bottom and at the top of the ladder
        low, high = marginal(done[0], done[1]), marginal(done[-2], done[-1])
        out["marginal_cpu_per_node_ms_low"], out["marginal_cpu_per_node_ms_high"] = low, high
        out["marginal_cpu_per_node_ratio"] = round(high / low, 2) if low > 0 else None
    return out


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    value = a[key] / b[key] if b[key] else math.inf
    return round(value, 2) if math.isfinite(value) else None


def marginal(a: dict[str, Any], b: dict[str, Any]) -> float:
    """CPU ms a round costs per node added between two rungs (fixed per-round costs cancel out)."""
    return round(1000 * (b["cpu_s_per_round"] - a["cpu_s_per_round"]) / (b["nodes"] - a["nodes"]), 3)


def keys(result: dict[str, Any]) -> dict[str, Any]:
    """The figures run_all.py reports (report.py's SCALE_KEYS say how each is measured)."""
    out = {k: result[k] for k in ("max_nodes_one_round", "coordinator_cpu_per_node_ratio") if k in result}
    if "marginal_cpu_per_node_ratio" in result:
        out["coordinator_marginal_cpu_per_node_ratio"] = result["marginal_cpu_per_node_ratio"]
    for row in result["rows"]:
        if row["completed"] and row["nodes"] in (16, 500, 1000):
            out[f"coordinator_cpu_per_node_ms_{row['nodes']}n"] = row["cpu_ms_per_node_iteration"]
            out[f"coordinator_own_cpu_per_node_ms_{row['nodes']}n"] = row["own_cpu_ms_per_node_iteration"]
        if row["completed"] and row["nodes"] == 1000:
            out["scale_round_s_1000n"] = row["round_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", default=",".join(map(str, LADDER)), help="the ladder, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one rung may take")
    args = parser.parse_args()
    result = measure([int(n) for n in args.nodes.split(",")], args.rounds, args.timeout)
    write("scale", result["rows"], **{k: v for k, v in result.items() if k != "rows"})
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
