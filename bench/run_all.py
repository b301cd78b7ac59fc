"""Every benchmark of issue 9 in one run: bench/results/latest.json and the table of docs/benchmarks.md.

    python bench/run_all.py [--quick]

``--quick`` (a few minutes): rounds of 4 and 16 nodes at 1 and 10 MiB. Full: also 64 nodes and
100 MiB (allowed to fail: the failure is recorded, not hidden). Measurements run one after
another, never side by side with each other, and every ratio comes from one run on one broker.
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
import bench_round
from _common import RESULTS
from bench_floor import MIB
from report import ROOT, write_docs


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
    """Runs one measurement; its result (or its failure, with the error) goes into ``details``."""
    started = time.monotonic()
    print(f"== {name}", flush=True)
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

    for nodes in node_counts:
        for mib in sizes_mib:
            name = f"round_{nodes}n_{mib}MB"
            row = attempt(name, details, functools.partial(bench_round.measure, nodes, mib * MIB, rounds))
            if row is None:
                continue
            if nodes == 16 and mib in (10, 100):
                keys[f"round_over_floor_16n_{mib}MB"] = row["round_over_floor"]
                keys[f"coordinator_peak_over_model_16n_{mib}MB"] = row["coordinator_peak_over_model"]

    result = {"mode": "quick" if args.quick else "full", **machine(), "keys": keys, "details": details}
    RESULTS.mkdir(exist_ok=True)
    latest = RESULTS / "latest.json"
    latest.write_text(json.dumps(result, indent=2))
    print(f"wrote {latest}")
    print(f"wrote {write_docs(result)}")
    print(json.dumps(keys, indent=2))


if __name__ == "__main__":
    main()
