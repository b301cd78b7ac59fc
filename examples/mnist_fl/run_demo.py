"""The demo: an embedded broker, three edge-node processes and the coordinator, on one machine.

    python examples/mnist_fl/run_demo.py [--nodes 3] [--broker-port 0]

Each node process sees only its own shard of the digits; the coordinator sees only models and
metrics. The last line gives the iteration count and the final mean validation accuracy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from manta_mqtt import BrokerAddress, Coordinator, CoordinatorOptions, RunStore, load_swarm
from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.processes import stop_process
from manta_mqtt.transport.broker import EmbeddedBroker

HERE = Path(__file__).resolve().parent
STATE = HERE.parent.parent / ".demo"
# Three "devices" share this machine's cores: one torch thread each, as on a small board,
# instead of every node's torch grabbing every core.
NODE_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def final_accuracy(store: RunStore) -> float:
    """Mean over nodes of each node's latest validation accuracy."""
    latest: dict[str, float] = {}
    for _iteration, per_node in sorted(store.results("metrics").items()):
        for node, metrics in per_node.items():
            latest[node] = float(metrics["val_acc"][-1])
    return sum(latest.values()) / len(latest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--broker-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-iterations", type=int, default=30, help="a bound, should a node never reach 0.95")
    args = parser.parse_args()

    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    owner = OwnerKey.generate()
    trusted = owner.save(STATE / "owner.key")  # the coordinator signs with it, the nodes trust it
    broker = EmbeddedBroker("127.0.0.1", args.broker_port).start()
    print(f"embedded broker on {broker.url}; assignments signed with key {owner.id}")
    nodes = []
    try:
        for i in range(1, args.nodes + 1):
            config = HERE / "nodes" / f"node{i}.toml"
            log = (STATE / f"node{i}.log").open("w")
            nodes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edge_node.cli",
                        "start",
                        "--config",
                        str(config),
                        "--broker",
                        broker.url,
                        "--mqtt-version",
                        "3.1.1",
                        "--trust-key",
                        str(trusted),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=NODE_ENV,
                )
            )
        print(f"started {args.nodes} edge nodes (logs in {STATE})")
        options = CoordinatorOptions(
            runs_dir=STATE / "runs",
            min_nodes=args.nodes,
            wait_nodes=60,
            mqtt_version="3.1.1",
            signing_key=STATE / "owner.key",
        )
        started = time.monotonic()
        summary = Coordinator(load_swarm(HERE / "swarm.py"), BrokerAddress.parse(broker.url), options).run()
        elapsed = time.monotonic() - started
        if summary.state == "failed":
            print(f"swarm failed: {summary.reason}")
            return 1
        store = RunStore.open(summary.store_path)
        accuracy = final_accuracy(store)
        store.close()
        print(
            f"{summary.iterations} iterations in {elapsed:.1f} s ({elapsed / summary.iterations:.1f} s each); "
            f"results: manta-mqtt results {summary.store_path}"
        )
        print(
            f"swarm {summary.state} by its scheduler after {summary.iterations} iterations — "
            f"final accuracy: {accuracy:.2f}"
        )
        return 0
    finally:
        for proc in nodes:
            proc.terminate()  # all at once, then wait for each
        for proc in nodes:
            stop_process(proc)
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
