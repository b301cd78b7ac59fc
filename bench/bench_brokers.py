"""One swarm on every broker: seconds per iteration of the no-op FedAvg swarm, brokers interleaved.

Brokers: ``mosquitto`` (ours, project config, MQTT 5), ``amqtt`` (in this process, 3.1.1),
``nats`` and ``nats-cluster`` (3 servers), ``rabbitmq`` and ``rabbitmq-cluster`` (2 nodes): all
on free loopback ports with their own files (manta_mqtt/tools), never the system services; NATS
and RabbitMQ speak MQTT 3.1.1 only. Every broker is started once; then, ``--rounds`` times, each
broker in turn runs the swarm (bench/swarms/noop_fedavg, a ``--mib`` MiB model) on ``--nodes``
fresh ``edge-node start`` processes and a ``manta-mqtt run`` process for ``--iterations`` + 1
iterations, so that a slow minute of the machine falls on every broker alike. An iteration's time
is the gap between consecutive aggregations (the aggregator records each), so start-up and the
first fetch do not count. In a cluster, node i connects to member i % n and the coordinator to
member 0: the traffic crosses the cluster. The brokers' CPU is read around each run: the one
under test's (amqtt's is this process's) and the idle others' (what they took from the run).

A run that fails records its error (with the coordinator's last lines); that broker is left out
of the later rounds, and the bench goes on.

    python bench/bench_brokers.py [--brokers nats,nats-cluster] [--rounds 3] [--iterations 5]
                                  [--nodes 4] [--mib 4] [--quick]

Writes bench/results/brokers.json.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import tree_cpu_seconds, write
from bench_round import start_node

from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.nats import NatsCluster, NatsServer
from manta_mqtt.tools.processes import stop_process
from manta_mqtt.tools.rabbitmq import RabbitCluster, RabbitNode
from manta_mqtt.transport.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
SWARM = Path(__file__).resolve().parent / "swarms" / "noop_fedavg" / "swarm.py"
BROKERS = ["mosquitto", "amqtt", "nats", "nats-cluster", "rabbitmq", "rabbitmq-cluster"]
MIB = 1 << 20


@dataclass
class Broker:
    """A started broker: its members' URLs, the MQTT version to speak, the processes to watch."""

    name: str
    urls: list[str]
    version: str
    pids: list[int] = field(default_factory=list)  # none for amqtt: it runs in this process

    def cpu_seconds(self) -> float:
        if not self.pids:
            return time.process_time()  # this process: amqtt's thread, and the bench idling
        return sum(tree_cpu_seconds(pid) for pid in self.pids)


def _pids(*procs: subprocess.Popen[bytes] | None) -> list[int]:
    return [p.pid for p in procs if p is not None]


def start_broker(name: str, workdir: Path, stack: contextlib.ExitStack) -> Broker:
    """Starts ``name`` (stopped when ``stack`` closes)."""
    if name == "mosquitto":
        mosquitto = stack.enter_context(MosquittoProcess(workdir))
        return Broker(name, [mosquitto.url], "5", _pids(mosquitto.proc))
    if name == "amqtt":
        amqtt = stack.enter_context(EmbeddedBroker(port=0))
        return Broker(name, [amqtt.url], "3.1.1")
    if name == "nats":
        nats = stack.enter_context(NatsServer(workdir))
        return Broker(name, [nats.url], "3.1.1", _pids(nats.proc))
    if name == "nats-cluster":
        cluster = stack.enter_context(NatsCluster(workdir, size=3))
        return Broker(name, cluster.urls, "3.1.1", _pids(*(s.proc for s in cluster.servers)))
    if name == "rabbitmq":
        rabbit = stack.enter_context(RabbitNode(workdir))
        return Broker(name, [rabbit.url], "3.1.1", _pids(rabbit.proc))
    if name == "rabbitmq-cluster":
        rabbits = stack.enter_context(RabbitCluster(workdir, size=2))
        return Broker(name, rabbits.urls, "3.1.1", _pids(*(n.proc for n in rabbits.nodes)))
    raise ValueError(f"unknown broker {name!r} (known: {', '.join(BROKERS)})")


@dataclass
class Settings:
    nodes: int
    model_bytes: int
    iterations: int
    wait: float  # seconds the coordinator waits for its nodes
    timeout: float  # seconds a whole run may take


def run_swarm(broker: Broker, tmp: Path, tag: str, key: Path, trusted: str, s: Settings) -> dict[str, Any]:
    """One run of the swarm on ``broker``: each iteration's seconds, the seconds until the first
    aggregation (start-up, the nodes found, the first fetch), and the run's wall time."""
    started, started_epoch = time.perf_counter(), time.time()
    urls = broker.urls
    nodes = [
        start_node(tmp, f"{tag}n{i}", urls[i % len(urls)], trusted, version=broker.version) for i in range(s.nodes)
    ]
    summary = tmp / "summary.json"
    command = [sys.executable, "-m", "manta_mqtt.cli.main", "run", str(SWARM), "--broker", urls[0]]
    command += ["--mqtt-version", broker.version, "--min-nodes", str(s.nodes), "--wait", str(s.wait)]
    command += ["--runs-dir", str(tmp / "runs"), "--signing-key", str(key), "--summary-json", str(summary)]
    env = {**os.environ, "MANTA_BENCH_ROUNDS": str(s.iterations + 1), "MANTA_BENCH_MODEL_BYTES": str(s.model_bytes)}
    with (tmp / "coordinator.log").open("ab") as log:
        coordinator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        coordinator.wait(s.timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:  # also on Ctrl-C: no coordinator or node outlives its run
        for proc in [coordinator, *nodes]:
            stop_process(proc)
    wall = time.perf_counter() - started
    if coordinator.returncode != 0 or not summary.exists():
        tail = (tmp / "coordinator.log").read_text(errors="replace")[-1500:]
        code = "timed out" if wall >= s.timeout else f"exit {coordinator.returncode}"
        raise RuntimeError(f"the swarm run failed ({code} after {wall:.0f} s): {tail}")
    store = RunStore.open(json.loads(summary.read_text())["store"])
    clock = sorted(value["coordinator"]["t"] for value in store.results("clock").values())
    store.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(clock)]
    if len(gaps) != s.iterations:
        raise RuntimeError(f"{len(clock)} aggregations recorded, {s.iterations + 1} expected")
    first = round(clock[0] - started_epoch, 2)
    return {"iteration_s": [round(g, 4) for g in gaps], "to_first_s": first, "wall_s": round(wall, 2)}


def measured(broker: Broker, others: list[Broker], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s row plus the CPU seconds the broker under test and the idle others used meanwhile."""
    cpu = {b.name: b.cpu_seconds() for b in [broker, *others]}
    row = run()
    used = {b.name: b.cpu_seconds() - cpu[b.name] for b in [broker, *others]}
    row["broker_cpu_s"] = round(used.pop(broker.name), 2)
    row["others_cpu_s"] = round(sum(used.values()), 2)
    return row


def bench(names: list[str], rounds: int, s: Settings, workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows (one per run, or its failure) and the errors of brokers that did not start."""
    key = workdir / "owner.key"
    trusted = OwnerKey.generate().save(key).read_text().strip()
    rows: list[dict[str, Any]] = []
    errors: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        brokers: list[Broker] = []
        for name in names:
            t0 = time.perf_counter()
            try:
                brokers.append(start_broker(name, workdir / name, stack))
                print(f"{name}: up in {time.perf_counter() - t0:.1f} s on {', '.join(brokers[-1].urls)}", flush=True)
            except Exception as exc:
                errors[name] = f"did not start: {type(exc).__name__}: {exc}"[:2000]
                print(f"{name}: {errors[name]}", flush=True)
        for r in range(rounds):
            for broker in list(brokers):
                tmp = Path(tempfile.mkdtemp(prefix=f"{broker.name}-r{r}-", dir=workdir))
                others = [b for b in brokers if b is not broker]
                row: dict[str, Any] = {"round": r, "broker": broker.name, "version": broker.version}
                row["members"] = len(broker.urls)
                try:
                    run = functools.partial(run_swarm, broker, tmp, f"r{r}", key, trusted, s)
                    row |= measured(broker, others, run)
                except Exception as exc:  # a failed run is a figure too: recorded, the rest goes on
                    traceback.print_exc()
                    row["failed"] = f"{type(exc).__name__}: {exc}"[:2000]
                    errors[broker.name] = row["failed"]
                    brokers.remove(broker)  # not again in later rounds: each failure costs a timeout
                rows.append(row)
                print({k: v for k, v in row.items() if k != "failed"} | ({"failed": True} if "failed" in row else {}))
    return rows, errors


def summarise(names: list[str], rows: list[dict[str, Any]], errors: dict[str, Any], s: Settings) -> dict[str, Any]:
    """Per broker: the median (and spread) of every iteration of every run, or why it has none."""
    out: dict[str, Any] = {}
    for name in names:
        ok = [row for row in rows if row["broker"] == name and "failed" not in row]
        gaps = [g for row in ok for g in row["iteration_s"]]
        entry: dict[str, Any] = {"runs": len(ok), "iterations": len(gaps)}
        if gaps:
            entry |= {
                "median_s": round(statistics.median(gaps), 4),
                "min_s": round(min(gaps), 4),
                "max_s": round(max(gaps), 4),
                "broker_cpu_s_per_iteration": round(sum(r["broker_cpu_s"] for r in ok) / (len(ok) * s.iterations), 3),
            }
        if name in errors:
            entry["error"] = errors[name]
        out[name] = entry
    return out


def ratio(summary: dict[str, Any], over: str, under: str) -> float | None:
    a, b = summary.get(over, {}).get("median_s"), summary.get(under, {}).get("median_s")
    return round(a / b, 2) if a and b else None


def table(summary: dict[str, Any]) -> str:
    lines = [f"{'broker':<18}{'runs':>5}{'iters':>6}{'median s':>10}{'min s':>8}{'max s':>8}{'cpu s/it':>9}  error"]
    for name, e in summary.items():
        cols = [("median_s", 10), ("min_s", 8), ("max_s", 8)]
        nums = [f"{e[k]:>{w}.3f}" if k in e else f"{'-':>{w}}" for k, w in cols]
        cpu = f"{e['broker_cpu_s_per_iteration']:>9.2f}" if "broker_cpu_s_per_iteration" in e else f"{'-':>9}"
        error = e.get("error", "").splitlines()[0][:90] if e.get("error") else ""
        lines.append(f"{name:<18}{e['runs']:>5}{e['iterations']:>6}{''.join(nums)}{cpu}  {error}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--brokers", default=",".join(BROKERS), help=f"comma-separated, of: {', '.join(BROKERS)}")
    parser.add_argument("--rounds", type=int, default=3, help="times each broker runs the swarm, interleaved")
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per run")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--mib", type=float, default=4.0, help="model size in MiB")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds the coordinator waits for the nodes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 iterations, 2 nodes, 1 MiB")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.iterations, args.nodes, args.mib = 1, 3, 2, 1.0
    names = [n.strip() for n in args.brokers.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BROKERS))
    if unknown:
        parser.error(f"unknown brokers {unknown} (known: {', '.join(BROKERS)})")
    s = Settings(args.nodes, int(args.mib * MIB), args.iterations, args.wait, args.timeout)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-brokers-") as tmp:
        rows, errors = bench(names, args.rounds, s, Path(tmp))
    summary = summarise(names, rows, errors, s)
    nats_ratio = ratio(summary, "nats-cluster", "nats")
    print(table(summary))
    print(f"nats-cluster / nats: {nats_ratio if nats_ratio is not None else '-'}")
    print(f"rabbitmq-cluster / rabbitmq: {ratio(summary, 'rabbitmq-cluster', 'rabbitmq') or '-'}")
    write(
        "brokers",
        rows,
        summary=summary,
        nats_cluster_over_single=nats_ratio,
        rabbitmq_cluster_over_single=ratio(summary, "rabbitmq-cluster", "rabbitmq"),
        nodes=args.nodes,
        model_mib=args.mib,
        rounds=args.rounds,
        iterations=args.iterations,
        cpus=os.cpu_count(),
        seconds=round(time.perf_counter() - started),
    )


if __name__ == "__main__":
    main()
