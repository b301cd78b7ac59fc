"""The command line, as a user types it: broker, run, results, nodes, watch, edge-node."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from manta_mqtt.protocol.signing import OwnerKey

from .conftest import ROOT, SIGNING_KEY, BrokerUnderTest
from .test_e2e_swarm import COUNTER, numbers

MANTA = [sys.executable, "-m", "manta_mqtt.cli.main"]
EDGE = [sys.executable, "-m", "edge_node.cli"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MANTA, *args] if args[0] != "edge-node" else [*EDGE, *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_the_whole_command_line(tmp_path: Path, start_nodes) -> None:  # type: ignore[no-untyped-def]
    port_file = tmp_path / "port"
    broker_proc = subprocess.Popen(
        [*MANTA, "broker", "--port", "0", "--port-file", str(port_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        port = int(port_file.read_text())
        url = f"mqtt://127.0.0.1:{port}"
        broker = BrokerUnderTest("amqtt", url, "3.1.1", port)
        nodes = start_nodes(broker, ["n1", "n2"], {"numbers.npy": numbers(tmp_path)})

        checked = cli("edge-node", "check", "--config", str(nodes[0].config))
        assert checked.returncode == 0 and "node n1" in checked.stdout and "numbers.npy" in checked.stdout

        unsigned = cli("run", str(COUNTER), "--broker", url, "--mqtt-version", "3.1.1", "--min-nodes", "2",
                       "--runs-dir", str(tmp_path / "unsigned"))  # fmt: skip
        assert unsigned.returncode == 1  # the nodes trust only SIGNING_KEY: they refuse, and say so
        assert "NOT signed" in unsigned.stdout and "refused: the assignment is not signed" in unsigned.stdout

        runs = tmp_path / "runs"
        summary_file = tmp_path / "summary.json"
        ran = cli("run", str(COUNTER), "--broker", url, "--mqtt-version", "3.1.1", "--min-nodes", "2",
                  "--runs-dir", str(runs), "--summary-json", str(summary_file),
                  "--signing-key", str(SIGNING_KEY))  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert f"assignments signed with key {OwnerKey.load(SIGNING_KEY).id}" in ran.stdout
        assert "iteration   2" in ran.stdout and "swarm stopped after 3 iteration(s)" in ran.stdout
        summary = json.loads(summary_file.read_text())
        assert summary["state"] == "stopped" and summary["iterations"] == 3

        listed = cli("results", str(runs))
        assert listed.stdout.splitlines()[1].split()[:2] == [summary["swarm_id"], "stopped"]  # a table of runs
        run_dir = str(runs / summary["swarm_id"])
        text = cli("results", run_dir)
        assert "stopped by task aggregator" in text.stdout and text.stdout.count(" ok ") == 9
        values = json.loads(cli("results", run_dir, "--tag", "val", "--iteration", "1", "--json").stdout)
        assert values == {"1": {n: {"x": 2, "sum": 45, "node": n} for n in ("n1", "n2")}}
        assert json.loads(cli("results", run_dir, "--global", "x").stdout) == 3
        assert json.loads(cli("results", run_dir, "--json").stdout)["iterations"] == 3

        table = json.loads(cli("nodes", "--broker", url, "--mqtt-version", "3.1.1", "--json").stdout)
        assert [(r["node"], r["state"]) for r in table] == [("n1", "online"), ("n2", "online")]

        watched = cli("watch", "--broker", url, "--mqtt-version", "3.1.1", "--seconds", "1.5")
        assert "manta/v2/nodes/n1/status online" in watched.stdout
        assert "stopped iteration=2" in watched.stdout  # the swarm's retained final state
    finally:
        broker_proc.terminate()
        broker_proc.wait(10)


def test_edge_node_refuses_a_bad_config_clearly(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[node]\nid = "has/slash"\n')
    result = cli("edge-node", "start", "--config", str(config))
    assert result.returncode != 0 and "invalid node.id" in result.stderr
    config.write_text('[node]\nid = "ok"\n[datasets]\n"d" = "missing.npz"\n')
    result = cli("edge-node", "check", "--config", str(config))
    assert result.returncode != 0 and "dataset 'd': nothing at" in result.stderr
    result = cli("edge-node", "check", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode != 0 and "no config file" in result.stderr
