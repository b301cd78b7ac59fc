"""Idle memory and CPU of an edge-node agent (RSS after it connected and announced itself, CPU
over a window of idling), next to a bare interpreter that only imports paho, msgpack and numpy;
then the same agent's RSS once it has run one task (a one-round no-op swarm, 1 MiB model): the
agent imports numpy and cryptography only when work arrives, so both figures are reported.

    python bench/bench_edge_rss.py [--settle 5] [--cpu-window 10] [--no-task]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write

from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
SWARM = ROOT / "bench" / "swarms" / "noop_fedavg" / "swarm.py"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one_task(tmp: Path, url: str, key: Path) -> None:
    """One round of the no-op swarm on the single node, signed with ``key``; raises if it fails."""
    command = [sys.executable, "-m", "manta_mqtt.cli.main", "run", str(SWARM), "--broker", url, "--min-nodes", "1"]
    command += ["--wait", "120", "--runs-dir", str(tmp / "runs"), "--signing-key", str(key)]
    env = {**os.environ, "MANTA_BENCH_ROUNDS": "1", "MANTA_BENCH_MODEL_BYTES": str(1 << 20)}
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the swarm run failed (exit {out.returncode}): {(out.stdout + out.stderr)[-2000:]}")


def measure(settle: float, cpu_window: float, task: bool = True) -> list[dict[str, Any]]:
    """Rows: the idle agent's RSS and CPU share, the bare interpreter's RSS, whether torch is
    imported, then (``task``) the agent's RSS after it ran one task and settled again."""
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mosquitto") as broker:
        key = Path(tmp) / "owner.key"
        trusted = OwnerKey.generate().save(key).read_text().strip()
        config = Path(tmp) / "node.toml"
        config.write_text(
            f'[node]\nid = "rss"\ndata_dir = "{tmp}/state"\n[broker]\nurl = "{broker.url}"\n'
            f'[trust]\nkeys = ["{trusted}"]\n'
        )
        agent = subprocess.Popen([sys.executable, "-m", "edge_node.cli", "start", "--config", str(config), "-q"])
        bare = subprocess.Popen(
            [sys.executable, "-c", "import paho.mqtt.client, msgpack, numpy, time; time.sleep(600)"]
        )
        try:
            time.sleep(settle)
            cpu_before = cpu_seconds(agent.pid)
            time.sleep(cpu_window)
            cpu_percent = 100 * (cpu_seconds(agent.pid) - cpu_before) / cpu_window
            rows: list[dict[str, Any]] = [
                {"process": "edge-node agent (idle, connected)", "rss_mib": round(rss_kib(agent.pid) / 1024, 1)},
                {"process": "edge-node agent CPU while idle", "cpu_percent": round(cpu_percent, 2)},
                {"process": "python importing paho+msgpack+numpy", "rss_mib": round(rss_kib(bare.pid) / 1024, 1)},
            ]
            if task:
                run_one_task(Path(tmp), broker.url, key)
                time.sleep(settle)
                after = {"process": "edge-node agent after one task (idle again)"}
                rows.append({**after, "rss_mib": round(rss_kib(agent.pid) / 1024, 1)})
        finally:
            for proc in (agent, bare):
                stop_process(proc)
    imports = subprocess.run(
        [sys.executable, "-c", "import edge_node.agent, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows.append({"process": "edge agent imports torch", "value": imports.stdout.strip()})
    for row in rows:
        print(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--cpu-window", type=float, default=10.0)
    parser.add_argument("--no-task", action="store_true", help="idle figures only: run no swarm on the agent")
    args = parser.parse_args()
    rows = measure(args.settle, args.cpu_window, task=not args.no_task)
    write("edge_rss", rows, settle_s=args.settle, cpu_window_s=args.cpu_window)


if __name__ == "__main__":
    main()
