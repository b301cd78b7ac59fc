"""Idle memory of an edge-node agent (RSS after it connected and announced itself), next to a
bare interpreter that only imports paho, msgpack and numpy.

    python bench/bench_edge_rss.py [--settle 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write

from manta_mqtt.tools.mosquitto import MosquittoProcess


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mosquitto") as broker:
        config = Path(tmp) / "node.toml"
        config.write_text(f'[node]\nid = "rss"\ndata_dir = "{tmp}/state"\n[broker]\nurl = "{broker.url}"\n')
        agent = subprocess.Popen([sys.executable, "-m", "edge_node.cli", "start", "--config", str(config), "-q"])
        bare = subprocess.Popen([sys.executable, "-c", "import paho.mqtt.client, msgpack, numpy, time; time.sleep(60)"])
        time.sleep(args.settle)
        rows = [
            {"process": "edge-node agent (idle, connected)", "rss_mib": round(rss_kib(agent.pid) / 1024, 1)},
            {"process": "python importing paho+msgpack+numpy", "rss_mib": round(rss_kib(bare.pid) / 1024, 1)},
        ]
        imports = subprocess.run(
            [sys.executable, "-c", "import edge_node.agent, sys; print('torch' in sys.modules)"],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append({"process": "edge agent imports torch", "value": imports.stdout.strip()})
        for proc in (agent, bare):
            proc.terminate()
            proc.wait(10)
    for row in rows:
        print(row)
    write("edge_rss", rows, settle_s=args.settle)


if __name__ == "__main__":
    main()
