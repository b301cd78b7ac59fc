"""``manta-mqtt results``: the table of runs, a global exported by its file's extension, JSON
that is JSON (never "<N bytes>"), and a PNG of the metrics."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from manta_mqtt.cli.main import cli
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import codec

WEIGHTS = np.linspace(0.0, 1.0, 2064)
PARAMS = {"w": np.ones((3, 2)), "b": np.zeros(2)}
STARTED = time.mktime((2026, 3, 4, 5, 6, 0, 0, 0, -1))


def make_run(runs: Path, swarm_id: str, final: dict[str, object] | None, started: float) -> None:
    store = RunStore.create(runs, swarm_id, {"id": swarm_id, "name": "fl", "tasks": {}, "started": started})
    for it in range(2):
        for node in ("n1", "n2"):
            metrics = {"acc": 0.5 + 0.1 * it + (node == "n2") * 0.01, "loss": 1.0 - 0.2 * it, "node": node}
            store.add_result(it, "worker", node, "metrics", store.put_value(codec.encode(metrics)))
            store.add_run(it, "worker", node, True, "", 1.0)
        store.add_run(it, "aggregator", "coordinator", True, "", 0.1)
    refs = {
        name: store.put_value(codec.encode(value))
        for name, value in {
            "weights": WEIGHTS,
            "params": PARAMS,
            "blob": b"\x00\x01raw",
            "count": 7,
            "huge": np.zeros(200_000),
        }.items()
    }
    store.set_globals(1, refs)
    if final is not None:
        store.set_meta("final", final)
    store.close()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    make_run(runs, "fl-old", {"state": "stopped", "reason": "by task", "metrics": {"acc": 0.905}}, STARTED)
    make_run(runs, "fl-new", None, STARTED + 3600)
    (runs / "junk").mkdir()
    return runs


def results(*args: str) -> Result:
    return CliRunner().invoke(cli, ["results", *args])


def test_the_runs_are_a_table(runs: Path) -> None:
    result = results(str(runs))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["RUN", "STATE", "STARTED", "ITER", "NODES", "METRICS"]
    assert lines[1].split() == ["fl-new", "unfinished", "2026-03-04", "06:06", "2", "2"]  # newest first
    assert lines[2].split() == ["fl-old", "stopped", "2026-03-04", "05:06", "2", "2", "acc=0.905"]
    assert lines[3] == "not runs (no index.sqlite): junk"
    rows = json.loads(results(str(runs), "--json").output)
    assert [(r["id"], r["state"], r["iterations"], r["nodes"]) for r in rows] == [
        ("fl-new", "unfinished", 2, 2),
        ("fl-old", "stopped", 2, 2),
    ]


def test_one_unfinished_run_says_so(runs: Path) -> None:
    assert (
        results(str(runs / "fl-new")).output.splitlines()[0] == "swarm fl-new (fl): unfinished (killed, or running now)"
    )


def test_json_prints_arrays_as_lists_and_refuses_bytes(runs: Path) -> None:
    run = str(runs / "fl-old")
    result = results(run, "--global", "weights", "--json")
    assert result.exit_code == 0 and json.loads(result.output) == WEIGHTS.tolist()
    assert json.loads(results(run, "--global", "params", "--json").output) == {k: v.tolist() for k, v in PARAMS.items()}
    for name in ("blob", "huge"):
        refused = results(run, "--global", name, "--json")
        assert refused.exit_code == 1 and "--out" in refused.output and "bytes>" not in refused.output
    assert "bytes>" not in results(run, "--global", "blob").output


def test_out_writes_by_the_extension(runs: Path, tmp_path: Path) -> None:
    run = str(runs / "fl-old")
    assert results(run, "--global", "weights", "--out", str(tmp_path / "w.npy")).exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), WEIGHTS)
    assert results(run, "--global", "params", "--out", str(tmp_path / "p.npz")).exit_code == 0
    with np.load(tmp_path / "p.npz") as loaded:
        assert sorted(loaded) == ["b", "w"] and all(np.array_equal(loaded[k], PARAMS[k]) for k in PARAMS)
    assert results(run, "--global", "blob", "--out", str(tmp_path / "b.bin")).exit_code == 0
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01raw"


@pytest.mark.parametrize(
    ("name", "file", "says"),
    [
        ("weights", "w.npz", "global weights is a ndarray, not a dict of arrays: .npz does not fit"),
        ("params", "p.npy", "global params is a dict, not an array: .npy does not fit"),
        ("count", "c.bin", "global count is a int, not raw bytes: use --json"),
        ("weights", "w.bin", "global weights is a ndarray, not raw bytes: use .npy"),
    ],
)
def test_out_refuses_a_mismatch(runs: Path, tmp_path: Path, name: str, file: str, says: str) -> None:
    result = results(str(runs / "fl-old"), "--global", name, "--out", str(tmp_path / file))
    assert result.exit_code == 1 and says in result.output, result.output
    assert not (tmp_path / file).exists()


def test_out_needs_a_global(runs: Path, tmp_path: Path) -> None:
    assert results(str(runs / "fl-old"), "--out", str(tmp_path / "x.npy")).exit_code == 2


def test_plot_writes_a_png_of_each_metric(runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "metrics.png"
    result = results(str(runs / "fl-old"), "--plot", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    height = int.from_bytes(data[20:24], "big")  # IHDR: two metrics (acc, loss), one plot each
    assert height == 2 * 240


def test_plot_without_matplotlib_is_one_line(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    result = results(str(runs / "fl-old"), "--plot", str(tmp_path / "m.png"))
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --plot needs matplotlib: pip install 'manta-mqtt[plot]'"
