"""docs/benchmarks.md from a run_all result: the key table (how, figure, target) and the details.

The whole file is generated: edit this module, not the document. Run alone, it rewrites the
document from the last bench/results/latest.json without measuring again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

#: key -> (target, how it is measured)
KEYS: dict[str, tuple[str, str]] = {
    "round_over_floor_16n_10MB": (
        "<= 1.5",
        "median round of the no-op FedAvg swarm (16 `edge-node` processes, `manta-mqtt run`) over the "
        "raw paho floor (bench/bench_floor.py), same Mosquitto, same 10 MiB",
    ),
    "round_over_floor_16n_100MB": ("<= 1.5", "as above at 100 MiB (full mode only; allowed to fail)"),
    "decode_GBps_100MB": (
        ">= 2",
        "`codec.decode` of a 100 MiB dict of four float32 arrays, GB/s (10^9) of array bytes, median of repeats",
    ),
    "encode_GBps_100MB": ("-", "`codec.encode` of the same dict"),
    "edge_idle_rss_MB": ("<= 40", "VmRSS (MiB) of an `edge-node start` agent, connected and idle for 5 s"),
    "edge_idle_cpu_percent_10s": ("-", "the same agent's CPU (user + system) over the next 10 s, percent of one core"),
    "edge_after_task_rss_MB": (
        "-",
        "VmRSS (MiB) of the same agent 5 s after it ran one task (one round of the no-op swarm, 1 MiB): "
        "numpy and cryptography are loaded by then",
    ),
    "coordinator_peak_over_model_16n_10MB": (
        "<= 4",
        "peak, over the 16-node 10 MiB run, of the summed VmRSS of the `manta-mqtt run` process and all "
        "its descendants (the aggregator runs in a child), sampled every 50 ms from /proc, over the "
        "model's MiB (pages shared between them count twice)",
    ),
    "coordinator_peak_over_model_16n_100MB": ("<= 4", "as above at 100 MiB (full mode only; allowed to fail)"),
    "speedup_vs_flower_16n_10MB": (
        ">= 15",
        "Flower's round over ours, both median gaps between consecutive aggregations, same no-op FedAvg "
        "(16 nodes, 10 MiB): Flower's Deployment Engine on loopback, one `flower-superlink`, 16 "
        "`flower-supernode` processes, `flwr run` of a ServerApp with Flower's FedAvg (bench/bench_flower.py)",
    ),
    "flower_supernode_idle_rss_MB": (
        "-",
        "VmRSS (MiB) of an idle `flower-supernode --insecure` connected to a SuperLink, 5 s after start, "
        "with the SuperExec child it starts itself (next to `edge_idle_rss_MB`)",
    ),
    "flower_supernode_idle_cpu_percent_10s": ("-", "the same SuperNode's CPU (both processes) over the next 10 s"),
    "fl_iteration_over_inprocess": (
        "<= 1.5",
        "seconds per iteration of the seed's MNIST example (examples/mnist_fl) over MQTT, 3 `edge-node` "
        "processes, over the same iterations trained in one plain Python process with no messaging "
        "(bench/bench_mnist.py; the first iteration is not counted on either side)",
    ),
    "fl_iteration_mqtt_s": ("-", "the MQTT side's seconds per iteration"),
    "fl_iteration_inprocess_s": ("-", "the in-process side's seconds per iteration"),
}

# --- bench_scale.py (simulated fleets) ----------------------------------------------------------
SCALE_KEYS: dict[str, tuple[str, str]] = {
    "max_nodes_one_round": (
        ">= 1000",
        "the largest N of the ladder (quick: 16-500, full: 16-2000) whose run of the no-op FedAvg swarm "
        "(1 KiB model, 3 rounds) completed: one `manta-mqtt run` with signed assignments, N simulated "
        "nodes (bench/simnodes.py: a real MQTT connection and the real protocol messages per node)",
    ),
    "coordinator_cpu_per_node_ms_16n": (
        "-",
        "CPU ms per node and round of the `manta-mqtt run` process and every process it started (the "
        "aggregator's task process and its sentinel; live, exited or reaped): utime + stime + cutime + cstime "
        "of each from /proc/*/stat (bench/_common.py's `TreeCpu`), sampled every 0.1 s, between the first and "
        "last aggregation, over N x the rounds between them. A read of /proc during which a child was reaped "
        "is read again, an orphaned process is followed, and the sum never decreases (until the fix, a task "
        "process reaped between the reads of the coordinator's cutime and of its own stat was in neither, "
        "which made the 16-node rung of the 2026-11-24 full run negative)",
    ),
    "coordinator_own_cpu_per_node_ms_16n": ("-", "the `manta-mqtt run` process alone, CPU ms per node and round"),
    "coordinator_own_cpu_per_node_ms_500n": ("-", "as above, 500 nodes"),
    "coordinator_own_cpu_per_node_ms_1000n": ("-", "as above, 1000 nodes (full mode)"),
    "coordinator_cpu_per_node_ms_500n": ("-", "as above, 500 nodes"),
    "coordinator_cpu_per_node_ms_1000n": ("-", "as above, 1000 nodes (full mode)"),
    "coordinator_cpu_per_node_ratio": (
        "<= 1.5 (flat)",
        "the largest N's figure over 16 nodes'; below 1 when the per-round cost (an aggregator "
        "process) dominates at 16",
    ),
    "coordinator_marginal_cpu_per_node_ratio": (
        "<= 1.5 (flat)",
        "what one more node costs a round at the top of the ladder over what it costs at the bottom: "
        "(CPU per round at N2 - at N1) / (N2 - N1), last two rungs over first two (fixed costs cancel)",
    ),
    "scale_round_s_1000n": ("-", "the 1000-node round, s (median gap between aggregations; full mode)"),
}
KEYS.update(SCALE_KEYS)

NOT_MEASURED: list[tuple[str, str, str]] = []

HEADER = """# Benchmarks

Generated by `bench/run_all.py` (`make bench-quick`: about 10 minutes; `make bench`: the full
suite) from `bench/results/latest.json`; do not edit by hand. Every figure below was measured in
the one run described here; ratios compare two things measured side by side in that run (this
machine is noisy, so read ratios, not absolute times). Targets come from issue 9; a figure that
misses its target is reported as measured.

Run: {mode} mode, {timestamp}, commit `{commit}`{dirty}, {machine} with {cpus} CPUs,
Linux {kernel}, Python {python}, Flower (`flwr`) {flower_version}. Other work may have shared the
machine during the run.
"""

ROUNDS_NOTE = """
## Rounds

`bench/bench_round.py`: N real `edge-node start` processes and one `manta-mqtt run
bench/swarms/noop_fedavg/swarm.py` on a Mosquitto the bench starts on a free loopback port with
`broker_config/mosquitto-dev.conf` (`MosquittoProcess`). Each worker adds 1 to the model (a dict
of four float32 arrays); the coordinator's aggregator averages the results (FedAvg) and records
the time; a round is the gap between two aggregations (median over the run; start-up and the
first fetch are not counted). The floor (`bench/bench_floor.py`, median of 3) on the same broker
just before: the model published retained in 1 MiB QoS 1 messages (the broker's 8 MiB packet
limit rules out one message) to N paho subscribers, each of which uploads the same bytes to one
collector once it holds the whole model, with at most 64 MiB of uploads in flight (well under the
broker's 512 MiB queue limit). The floor's clients all live in one
process. The coordinator's peak: the largest summed VmRSS of the `manta-mqtt run` process and its
descendants (the aggregator's process among them), sampled every 50 ms; the main process's own
VmHWM beside it. Below the table: the processes of the tree at the sample of the peak.

| nodes | model MiB | floor s | round s (each) | round / floor | coordinator peak MiB | VmHWM MiB | peak / model |
|---|---|---|---|---|---|---|---|
"""

FLOWER_NOTE = """
`bench/bench_flower.py` with Flower {version} from `.bench-venv` (`make bench` and `make
bench-quick` create it and pip install the `flwr` the Makefile pins; `make test` never does):
Flower's Deployment Engine on loopback, insecure (no TLS, as our Mosquitto): one
`flower-superlink`, N `flower-supernode` processes (each starts a SuperExec child of its own and
runs the ClientApp in a further process), then `flwr run` of the Flower App in
bench/swarms/flower_noop. Its ServerApp runs Flower's `FedAvg` strategy (every node trains each
round, no evaluation) on the same model as ours (four float32 arrays, N MiB); its ClientApp adds
1 to the model and returns it whole. The ServerApp records the time of each aggregation and a
round is the median gap between consecutive ones, as for ours (quick mode: 3 rounds, 2 gaps). A
SuperNode with no message waits 3 s before it asks the SuperLink again (flwr's
`start_client_internal`), which bounds a Flower round from below at small models. Flower stops
at 16 nodes here: a SuperNode is two processes of ~260 MiB together at idle, and 64 of them would
not fit beside the rest on this 2-core machine. "ours" is the round of the same nodes and size in
the Rounds table above.

| nodes | model MiB | Flower round s (each) | ours s | Flower / ours |
|---|---|---|---|---|
"""

MNIST_NOTE = """
`bench/bench_mnist.py`: examples/mnist_fl as `make demo` runs it (its swarm.py, 3 `edge-node
start` processes with one torch thread each, one data partition each), on a Mosquitto of our
own, with `manta-mqtt run` until its scheduler stops it (every node at 95 % validation accuracy).
An iteration ends when its last task (the scheduler) is recorded in the run's store; iteration k
lasts from the end of k-1 to the end of k, so the first (start-up, the first fetch of the code)
is not counted. Then, in one plain Python process (one torch thread, no messaging, no
serialisation), the example's own code (the MLP, the Worker's `train_model`, the Aggregator's
`aggregate_models`, hyperparameters.py) runs the same iterations: in each, the nodes that trained
in that iteration over MQTT train one after another from the global weights, then their weights
are averaged; this replay is done 3 times and each iteration's median kept. The example usually
ends after 2 iterations, so the whole is repeated (quick: 2 runs, full: 3) and the counted
iterations pooled. "worker task s": each counted worker task's duration as its node reported it.
"""

CODEC_NOTE = """`bench/bench_codec.py`, 100 MiB of float32 in four arrays. The codec decodes with msgspec, whose
extension hook hands over a view into the received buffer: arrays are wrapped where they lie
(read-only, zero-copy), so decoding time hardly grows with the model and its "GB/s" is the
arrays' size over the time to check the headers and wrap them, not a bandwidth. A task that needs
a writable array pays one copy when it makes one (numpy's own speed)."""

OTHERS = """## Not in this run

The other scripts in bench/ run alone and are not part of `make bench`: `bench_transfer.py`
(chunked blob versus one raw publish, on Mosquitto and amqtt), `bench_tls.py`,
`bench_signing.py`, `bench_top.py` and `bench_upload_bomb.py` (each takes `--help` and writes its
JSON to bench/results/), and `wire_trace.py` (a trace of every message of a counter-swarm run, to
diff two versions). In full mode (`make bench`) the 64-node 100 MiB round is not run: 64 real node
processes would each hold the model a few times (the global, the model plus one, its encoding),
~26 GB together, more than this 24 GiB machine has (bench/run_all.py says so in its table row).

Before the coordinator pulled uploads (commit d079133 and earlier), the 16-node 100 MiB round
stalled: all 16 nodes pushed their 100 MiB at once, the broker logged "Outgoing messages are being
dropped for client coordinator-..." past mosquitto-dev.conf's max_queued_bytes of 512 MiB, and
the step went on at its deadline, 11 minutes later, with 10 of 16 results. Now the coordinator
grants chunks within a 32 MiB window (docs/protocol.md, *Flow control*) and the round completes:
see the Rounds table."""


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _failed(entry: dict[str, Any]) -> str:
    return f"failed: {entry.get('failed', 'not run').splitlines()[0][:300]}"


def flower_section(result: dict[str, Any]) -> list[str]:
    details = result["details"]
    lines = ["", "## Flower", "", FLOWER_NOTE.format(version=result.get("flower_version", "?")).strip("\n")]
    for name, entry in details.items():
        if not name.startswith("flower_round_"):
            continue
        if "failed" in entry:
            lines.append(f"| {name} | | {_failed(entry)} | | |")
            continue
        r = entry["result"]
        each = ", ".join(_fmt(g) for g in r["round_s_all"])
        ours, speedup = _fmt(r.get("manta_round_s", "-")), _fmt(r.get("speedup", "-"))
        lines.append(f"| {r['nodes']} | {_fmt(r['model_mib'])} | {_fmt(r['round_s'])} ({each}) | {ours} | {speedup} |")
    idle = details.get("flower_idle", {})
    lines += ["", "Idle, connected (`bench_flower.py idle`):", ""]
    if "result" in idle:
        r = idle["result"]
        lines += [
            "| process | figure |",
            "|---|---|",
            f"| `flower-supernode` alone | {_fmt(r['supernode_rss_mib'])} MiB RSS |",
            f"| `flower-supernode` and its SuperExec child | {_fmt(r['supernode_tree_rss_mib'])} MiB RSS |",
            f"| both, CPU while idle | {_fmt(r['supernode_tree_cpu_percent'])} % CPU |",
        ]
    else:
        lines.append(_failed(idle))
    return lines


def mnist_section(details: dict[str, Any]) -> list[str]:
    entry = details.get("mnist_fl", {})
    lines = ["", "## The MNIST example: over MQTT and in one process", "", MNIST_NOTE.strip("\n")]
    if "result" not in entry:
        return [*lines, "", _failed(entry)]
    r = entry["result"]
    lines += ["", "| run | nodes training per iteration | MQTT s (counted) | in-process s (counted) | worker task s |"]
    lines.append("|---|---|---|---|---|")
    for i, run in enumerate(r["runs"], start=1):
        workers = [
            ", ".join(_fmt(v) for k, v in it.items() if k.startswith("worker")) for it in run.get("task_s", [])[1:]
        ]
        lines.append(
            f"| {i} | {run['nodes_per_iteration']} | {', '.join(_fmt(s) for s in run['mqtt_s'])} "
            f"| {', '.join(_fmt(s) for s in run['inprocess_s'])} | {'; '.join(workers)} |"
        )
    lines += [
        "",
        f"{r['iterations_counted']} iterations counted: {_fmt(r['mqtt_s_per_iteration'])} s each over MQTT, "
        f"{_fmt(r['inprocess_s_per_iteration'])} s in one process, ratio {_fmt(r['ratio'])}.",
    ]
    return lines


def scale_section(details: dict[str, Any]) -> list[str]:
    """bench_scale.py's ladder: one row per N."""
    entry = details.get("scale", {})
    lines = ["", "## Scale: simulated fleets", "", SCALE_NOTE.rstrip("\n")]
    if "result" not in entry:
        return [*lines, "", _failed(entry)]
    lines += ["", "| nodes | done | round s (each) | results/s | CPU ms/node/round | own CPU ms/node/round |"]
    lines.append("|---|---|---|---|---|---|")
    for r in entry["result"]["rows"]:
        if not r["completed"]:
            lines.append(f"| {r['nodes']} | no ({_fmt(r['wall_s'])} s) | | | | |")
            continue
        each = ", ".join(_fmt(g) for g in r["round_s_all"])
        lines.append(
            f"| {r['nodes']} | yes | {_fmt(r['round_s'])} ({each}) | {_fmt(r['results_per_s'])} "
            f"| {_fmt(r['cpu_ms_per_node_iteration'])} | {_fmt(r['own_cpu_ms_per_node_iteration'])} |"
        )
    return lines


SCALE_NOTE = """`bench/bench_scale.py`: for each N, a Mosquitto of our own, N simulated nodes
(`bench/simnodes.py`, 250 per process, each a paho connection driven by one loop: a retained
`NodeStatus` with heartbeats, busy/online changes and answers to `Discover`, assignments parsed
with `Assignment.parse` but not verified, each blob fetched once per node by asking for its chunks
(`BlobRequest`, a window at a time), a real `ResultEnvelope` with the model plus one inline) and one `manta-mqtt run` of
bench/swarms/noop_fedavg with a 1 KiB model and signed assignments. Results/s: results recorded
per second during a worker step (the run store's `at`). CPU: the coordinator process's own
(utime + stime), and with that of every process it started (the aggregator runs in a child
process), exited ones included."""


def write_docs(result: dict[str, Any]) -> Path:
    """Writes docs/benchmarks.md for ``result`` (run_all's latest.json); returns its path."""
    keys, details = result["keys"], result["details"]
    commit = result["git_commit"][:12]
    dirty = " plus uncommitted changes to the measured code" if result["git_dirty"] else ""
    lines = [
        HEADER.format(**{"flower_version": "not recorded", **result, "commit": commit, "dirty": dirty}),
        "| key | figure | target | how it is measured |",
        "|---|---|---|---|",
    ]
    for key, (target, how) in KEYS.items():
        figure = _fmt(keys[key]) if key in keys else "not in this run"
        lines.append(f"| `{key}` | {figure} | {target} | {how} |")
    for key, target, how in NOT_MEASURED:
        lines.append(f"| `{key}` | - | {target} | {how} |")
    lines.append(ROUNDS_NOTE.rstrip("\n"))
    for name, entry in details.items():
        if not name.startswith("round_"):
            continue
        if "failed" in entry:
            lines.append(f"| {name} | | | {_failed(entry)} | | | | |")
            continue
        r = entry["result"]
        each = ", ".join(_fmt(g) for g in r["round_s_all"])
        lines.append(
            f"| {r['nodes']} | {_fmt(r['model_mib'])} | {_fmt(r['floor_s'])} | {_fmt(r['round_s'])} ({each}) "
            f"| {_fmt(r['round_over_floor'])} | {_fmt(r['coordinator_peak_mib'])} "
            f"| {_fmt(r.get('coordinator_hwm_mib', '-'))} | {_fmt(r['coordinator_peak_over_model'])} |"
        )
    for name, entry in details.items():
        parts = entry.get("result", {}).get("coordinator_peak_parts") if name.startswith("round_") else None
        if parts:
            if not lines[-1].startswith("- "):
                lines.append("")
            listed = ", ".join(f"{comm} {_fmt(mib)}" for comm, mib in parts)
            lines.append(f"- {name}: the peak's processes (MiB RSS): {listed}")
    codec = details.get("codec_100MB", {})
    lines += ["", "## Codec", "", CODEC_NOTE, ""]
    if "result" in codec:
        lines += [
            "| case | bytes | encode GB/s | decode GB/s | encode / codec | decode / codec |",
            "|---|---|---|---|---|---|",
        ]
        for row in codec["result"]:
            lines.append(
                f"| {row['case']} | {row['bytes']} | {_fmt(row['encode_GBps'])} | {_fmt(row['decode_GBps'])} "
                f"| {_fmt(row['encode_vs_codec'])} | {_fmt(row['decode_vs_codec'])} |"
            )
    else:
        lines.append(f"failed: {codec.get('failed', 'not run')}")
    edge = details.get("edge_idle", {})
    lines += ["", "## Edge agent at idle", "", "`bench/bench_edge_rss.py`.", ""]
    if "result" in edge:
        lines += ["| process | figure |", "|---|---|"]
        for row in edge["result"]:
            value = row.get("rss_mib", row.get("cpu_percent", row.get("value")))
            unit = " MiB RSS" if "rss_mib" in row else " % CPU" if "cpu_percent" in row else ""
            lines.append(f"| {row['process']} | {_fmt(value)}{unit} |")
    else:
        lines.append(f"failed: {edge.get('failed', 'not run')}")
    lines += flower_section(result)
    lines += mnist_section(details)
    lines += scale_section(details)
    lines += ["", OTHERS]
    DOC.write_text("\n".join(lines) + "\n")
    return DOC


if __name__ == "__main__":
    print(f"wrote {write_docs(json.loads((ROOT / 'bench' / 'results' / 'latest.json').read_text()))}")
