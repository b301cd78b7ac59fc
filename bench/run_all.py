"""Every benchmark of issue 9 in one run: bench/results/latest.json and the table of docs/benchmarks.md.

    python bench/run_all.py [--quick]

``--quick`` (about 10 minutes): rounds of 4 and 16 nodes at 1 and 10 MiB, Flower's at 4 and 16
nodes at 10 MiB (bench_flower.py, from the .bench-venv that ``make bench-quick`` creates), the
MNIST example over MQTT and in one process (bench_mnist.py). Full: also 64 nodes and 100 MiB for
ours (allowed to fail: the failure is recorded, not hidden), and Flower at 1 MiB too.
Measurements run one after another, never side by side with each other, and every ratio comes
from one run on one broker.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable
from typing import Any

import bench_codec
import bench_edge_rss
import bench_flower
import bench_mnist
import bench_round
import bench_scale
from _common import RESULTS
from bench_floor import MIB
from report import ROOT, write_docs

#: 64 nodes x 100 MiB is not run here: each node is an agent plus its task process, and each holds
#: the model a few times over (the global it read, the model plus one, its encoding): ~400 MiB a
#: node, so 64 of them need ~26 GB beside the coordinator and the broker, more than this 24 GiB
#: machine has. The protocol does not care (the coordinator pulls uploads within a fixed window).
TOO_BIG_NODE_MIB = 16 * 100
TOO_BIG_WHY = "(64 real node processes would need ~26 GB of RAM on one machine: see run_all.py)"


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    measured = ["manta_mqtt", "manta_light", "edge_node", "bench", "broker_config"]  # the code a figure depends on
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", *measured]
    dirty = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": commit,
        "git_dirty": bool(dirty.strip()),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def attempt(name: str, details: dict[str, Any], fn: Callable[[], Any]) -> Any:
    """Runs one measurement; its result (or its failure, with the error) goes into ``details``.

    First the disk: what an earlier measurement wrote (some GiB at 100 MiB models) is flushed
    before this one starts, else its writeback lands on this one (the 16 x 10 MiB round took
    3.97 s after the 4 x 100 MiB rounds, 1.6-1.7 s alone, on this VM)."""
    flushed = time.monotonic()
    os.sync()
    started = time.monotonic()
    print(f"== {name} (sync: {started - flushed:.1f} s)", flush=True)
    try:
        result = fn()
    except Exception as exc:  # a failed measurement is a figure too: recorded, the rest goes on
        traceback.print_exc()
        details[name] = {"failed": f"{type(exc).__name__}: {exc}"[:2000], "seconds": round(time.monotonic() - started)}
        return None
    details[name] = {"result": result, "seconds": round(time.monotonic() - started)}
    if isinstance(result, dict):
        print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer nodes and sizes")
    args = parser.parse_args()
    node_counts = [4, 16] if args.quick else [4, 16, 64]
    sizes_mib = [1, 10] if args.quick else [1, 10, 100]
    rounds = 4 if args.quick else 5
    details: dict[str, Any] = {}
    keys: dict[str, float] = {}

    codec_rows = attempt("codec_100MB", details, lambda: bench_codec.measure(100 * MIB // 4, 3 if args.quick else 5))
    if codec_rows:
        keys["decode_GBps_100MB"] = codec_rows[0]["decode_GBps"]
        keys["encode_GBps_100MB"] = codec_rows[0]["encode_GBps"]

    edge_rows = attempt("edge_idle", details, lambda: bench_edge_rss.measure(settle=5.0, cpu_window=10.0))
    if edge_rows:
        keys["edge_idle_rss_MB"] = edge_rows[0]["rss_mib"]
        keys["edge_idle_cpu_percent_10s"] = edge_rows[1]["cpu_percent"]
        keys["edge_after_task_rss_MB"] = edge_rows[3]["rss_mib"]

    flower_idle = attempt("flower_idle", details, lambda: bench_flower.idle(settle=5.0, cpu_window=10.0))
    if flower_idle:
        keys["flower_supernode_idle_rss_MB"] = flower_idle["supernode_tree_rss_mib"]
        keys["flower_supernode_idle_cpu_percent_10s"] = flower_idle["supernode_tree_cpu_percent"]

    for nodes in node_counts:
        for mib in sizes_mib:
            name = f"round_{nodes}n_{mib}MB"
            if nodes * mib > TOO_BIG_NODE_MIB:
                details[name] = {"failed": f"not run: {nodes} x {mib} MiB {TOO_BIG_WHY}", "seconds": 0}
                continue
            row = attempt(name, details, functools.partial(bench_round.measure, nodes, mib * MIB, rounds))
            if row is None:
                continue
            if nodes == 16 and mib in (10, 100):
                keys[f"round_over_floor_16n_{mib}MB"] = row["round_over_floor"]
                keys[f"coordinator_peak_over_model_16n_{mib}MB"] = row["coordinator_peak_over_model"]

    # Flower's SuperNodes are two processes each (~260 MiB together at idle): 64 of them would not fit
    # beside the rest on the 2-core machine, so Flower stops at 16 nodes.
    flower_sizes = [10] if args.quick else [1, 10]
    for nodes in (4, 16):
        for mib in flower_sizes:
            name = f"flower_round_{nodes}n_{mib}MB"
            flower_rounds = 3 if args.quick else rounds  # a Flower round of 16 nodes takes ~30 s here
            row = attempt(name, details, functools.partial(bench_flower.measure, nodes, mib * MIB, flower_rounds))
            ours = details.get(f"round_{nodes}n_{mib}MB", {}).get("result")
            if row is None or ours is None:
                continue
            row["manta_round_s"] = ours["round_s"]
            row["speedup"] = round(row["round_s"] / ours["round_s"], 2)
            if nodes == 16 and mib == 10:
                keys["speedup_vs_flower_16n_10MB"] = row["speedup"]

    # bench_scale.py: simulated fleets of growing N (quick: up to 500 nodes; full: up to 2000)
    ladder = bench_scale.QUICK_LADDER if args.quick else bench_scale.LADDER
    scale = attempt("scale", details, functools.partial(bench_scale.measure, ladder))
    if scale:
        keys.update(bench_scale.keys(scale))

    mnist = attempt("mnist_fl", details, functools.partial(bench_mnist.measure, 2 if args.quick else 3))
    if mnist:
        keys["fl_iteration_over_inprocess"] = mnist["ratio"]
        keys["fl_iteration_mqtt_s"] = mnist["mqtt_s_per_iteration"]
        keys["fl_iteration_inprocess_s"] = mnist["inprocess_s_per_iteration"]

    try:
        flower_version = bench_flower.flower_version()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        flower_version = f"unavailable: {exc}"
    result = {
        "mode": "quick" if args.quick else "full",
        **machine(),
        "flower_version": flower_version,
        "keys": keys,
        "details": details,
    }
    RESULTS.mkdir(exist_ok=True)
    latest = RESULTS / "latest.json"
    latest.write_text(json.dumps(result, indent=2))
    print(f"wrote {latest}")
    print(f"wrote {write_docs(result)}")
    print(json.dumps(keys, indent=2))


if __name__ == "__main__":
    main()
