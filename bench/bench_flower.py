"""The no-op FedAvg round of bench_round.py on Flower's Deployment Engine, and an idle SuperNode.

Flower (``flwr``, pinned in the Makefile) lives in its own venv, ``.bench-venv``, which ``make
bench`` and ``make bench-quick`` create; this script runs only Flower's own commands from it
(``MANTA_BENCH_FLOWER_VENV`` names another). On loopback: one ``flower-superlink --insecure``, N
``flower-supernode --insecure`` processes (each with the SuperExec child that Flower starts
beside it), then ``flwr run`` of the App in bench/swarms/flower_noop: its ServerApp runs
Flower's FedAvg strategy over every node for R rounds on a model of four float32 arrays (the
same model as bench/swarms/noop_fedavg), each ClientApp adds 1 to the model and returns it whole.
The ServerApp appends the time of each aggregation to a file; the round time is the median gap
between consecutive aggregations, as in bench_round.py (start-up and the first round's fetch are
not counted).

    python bench/bench_flower.py round [--nodes 4] [--mib 10] [--rounds 4]
    python bench/bench_flower.py idle [--settle 5] [--cpu-window 10]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import status_kib, tree_cpu_seconds, tree_rss_kib

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "swarms" / "flower_noop" / "flower_noop"
VENV = Path(os.environ.get("MANTA_BENCH_FLOWER_VENV", ROOT / ".bench-venv"))
MIB = 1 << 20

PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "flower-noop"
version = "1.0.0"
description = "manta-mqtt's no-op FedAvg benchmark round"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "manta-bench"

[tool.flwr.app.components]
serverapp = "flower_noop.server_app:app"
clientapp = "flower_noop.client_app:app"

[tool.flwr.app.config]
nodes = {nodes}
model-bytes = {model_bytes}
rounds = {rounds}
clock-file = "{clock}"
"""


def flower_bin(name: str) -> str:
    path = VENV / "bin" / name
    if not path.exists():
        raise RuntimeError(f"no {path}: `make bench` or `make bench-quick` creates {VENV} with flwr")
    return str(path)


def flower_version() -> str:
    python = flower_bin("python")
    command = [python, "-c", "import importlib.metadata as m; print(m.version('flwr'))"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Federation:
    """A SuperLink and N SuperNodes on loopback, each in its own process group (ended with it)."""

    def __init__(self, tmp: Path, nodes: int) -> None:
        self.tmp = tmp
        self.port = free_port()
        home = tmp / "flwr-home"
        home.mkdir()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        # Flower's processes start each other by name (flower-superexec, flwr-serverapp...).
        path = f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "FLWR_HOME": str(home), "PATH": path, "OMP_NUM_THREADS": "1"}
        self.env.pop("VIRTUAL_ENV", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.superlink = self._start(
            "superlink",
            [
                flower_bin("flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                *self._at(self.port),
            ],
        )
        wait_port(self.port, 60)
        self.supernodes = [
            self._start(
                f"supernode{i}",
                [
                    flower_bin("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{self.port}",
                    *self._at(free_port()),
                ],
            )
            for i in range(nodes)
        ]

    @staticmethod
    def _at(port: int) -> list[str]:
        """The address of a process's own HTTP API (the SuperLink's, a SuperNode's runtime API)."""
        return ["--host", "127.0.0.1", "--port", str(port)]

    def _start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp, env=self.env, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:  # the process group: Flower's own children (SuperExec, apps) too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def federation(nodes: int) -> Iterator[Federation]:
    with tempfile.TemporaryDirectory(prefix="flower-bench-") as tmp_name:
        fed = Federation(Path(tmp_name), nodes)
        try:
            yield fed
        finally:
            fed.stop()


def measure(nodes: int, model_bytes: int, rounds: int, timeout: float = 1800) -> dict[str, Any]:
    """Flower's no-op FedAvg round: ``rounds`` rounds on ``nodes`` SuperNodes; median gap and each."""
    with federation(nodes) as fed:
        app = fed.tmp / "app"
        shutil.copytree(APP, app / APP.name, ignore=shutil.ignore_patterns("__pycache__"))
        clock = fed.tmp / "clock.txt"
        config = {"nodes": nodes, "model_bytes": model_bytes, "rounds": rounds, "clock": clock}
        (app / "pyproject.toml").write_text(PYPROJECT.format(**config))
        command = [flower_bin("flwr"), "run", str(app), "bench", "--stream"]
        with (fed.tmp / "flwr-run.log").open("ab") as log:
            try:
                done = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=fed.tmp, env=fed.env, timeout=timeout
                )
                code: int | str = done.returncode
            except subprocess.TimeoutExpired:
                code = f"timeout after {timeout} s"
        lines = clock.read_text().split("\n") if clock.exists() else []
        times = [float(line.split()[0]) for line in lines if line.strip()]
        counts = [int(line.split()[1]) for line in lines if line.strip()]
        if len(times) < rounds or any(c != nodes for c in counts):
            tail = (fed.tmp / "flwr-run.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"flwr run ({code}): {len(times)} of {rounds} rounds, results {counts}: {tail}")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return {
        "nodes": nodes,
        "model_mib": model_bytes / MIB,
        "round_s": round(statistics.median(gaps), 4),
        "round_s_all": [round(g, 4) for g in gaps],
    }


def idle(settle: float, cpu_window: float) -> dict[str, Any]:
    """One SuperNode connected to a SuperLink, idle: its RSS (alone, and with its SuperExec child)
    after ``settle`` seconds, and the CPU share of both over the next ``cpu_window`` seconds."""
    with federation(1) as fed:
        node = fed.supernodes[0].pid
        time.sleep(settle)
        cpu_before = tree_cpu_seconds(node)
        time.sleep(cpu_window)
        cpu_percent = 100 * (tree_cpu_seconds(node) - cpu_before) / cpu_window
        return {
            "supernode_rss_mib": round(status_kib(node, "VmRSS") / 1024, 1),
            "supernode_tree_rss_mib": round(tree_rss_kib(node) / 1024, 1),
            "supernode_tree_cpu_percent": round(cpu_percent, 2),
            "settle_s": settle,
            "cpu_window_s": cpu_window,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    rounds = sub.add_parser("round", help="the no-op FedAvg round")
    rounds.add_argument("--nodes", type=int, default=4)
    rounds.add_argument("--mib", type=int, default=10)
    rounds.add_argument("--rounds", type=int, default=4)
    idle_parser = sub.add_parser("idle", help="an idle SuperNode's memory and CPU")
    idle_parser.add_argument("--settle", type=float, default=5.0)
    idle_parser.add_argument("--cpu-window", type=float, default=10.0)
    args = parser.parse_args()
    print(f"flwr {flower_version()}")
    if args.what == "round":
        print(measure(args.nodes, args.mib * MIB, args.rounds))
    else:
        print(idle(args.settle, args.cpu_window))


if __name__ == "__main__":
    main()
