"""On-disk run store (RunStore, BlobStore), the coordinator task host, and the metrics summary."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.coordinator.engine import COORDINATOR_NODE
from manta_mqtt.coordinator.host import CoordinatorHost
from manta_mqtt.coordinator.metrics import summarize
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import sha256
from manta_mqtt.runtime.host import TaskHostError

from .payloads import CannedPayload, value_bytes

DESCRIPTION = {"name": "demo", "tasks": ["worker", "agg"]}


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    run = RunStore.create(tmp_path / "runs", "swarm-1", DESCRIPTION)
    yield run
    run.close()


def put(store: RunStore, value: object) -> str:
    return store.put_value(codec.encode(value))


@pytest.fixture
def filled(store: RunStore) -> RunStore:
    """Two iterations: two workers report metrics, the aggregator reports too; globals move on."""
    accs = {0: (("n1", 0.5), ("n2", 0.7)), 1: (("n1", 0.6), ("n2", 0.8))}
    for it in (0, 1):
        for node, acc in accs[it]:
            store.add_result(it, "worker", node, "metrics", put(store, {"acc": [acc]}))
            store.add_run(it, "worker", node, True, "", 1.0)
        store.add_result(it, "agg", COORDINATOR_NODE, "weights", put(store, [it, it]))
        store.add_run(it, "agg", COORDINATOR_NODE, True, "", 0.5)
        store.set_globals(it, {"model": put(store, f"model-{it}")})
    store.add_run(1, "worker", "n3", False, "boom", 2.0)
    store.set_meta("final", {"state": "completed"})
    return store


# --- RunStore --------------------------------------------------------------------------------


def test_create_writes_meta_and_layout(store: RunStore, tmp_path: Path) -> None:
    """create makes <runs>/<id>/ with index.sqlite and blobs/, and records the description."""
    root = tmp_path / "runs" / "swarm-1"
    assert store.root == root
    assert (root / "index.sqlite").is_file()
    assert (root / "blobs").is_dir()
    assert store.meta("swarm") == DESCRIPTION
    assert store.meta("absent", "dflt") == "dflt"


def test_create_refuses_existing_run_dir(store: RunStore, tmp_path: Path) -> None:
    """Creating a run whose folder already exists fails instead of mixing two runs."""
    with pytest.raises(FileExistsError):
        RunStore.create(tmp_path / "runs", "swarm-1", {})


def test_open_missing_run(tmp_path: Path) -> None:
    """Opening a folder without index.sqlite is a FileNotFoundError."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        RunStore.open(tmp_path / "empty")


@pytest.fixture
def reopened(filled: RunStore) -> Iterator[RunStore]:
    """The filled run, closed and read back through RunStore.open (as after the run)."""
    filled.close()
    run = RunStore.open(str(filled.root))
    yield run
    run.close()


def test_reopen_results_by_tag(reopened: RunStore) -> None:
    """results(tag) gives {iteration: {node: decoded value}}."""
    assert reopened.results("metrics") == {
        0: {"n1": {"acc": [0.5]}, "n2": {"acc": [0.7]}},
        1: {"n1": {"acc": [0.6]}, "n2": {"acc": [0.8]}},
    }
    assert reopened.results("weights") == {0: {COORDINATOR_NODE: [0, 0]}, 1: {COORDINATOR_NODE: [1, 1]}}
    assert reopened.results("unknown") == {}


def test_reopen_results_one_iteration(reopened: RunStore) -> None:
    """results(tag, iteration) restricts to one iteration."""
    assert reopened.results("metrics", 1) == {1: {"n1": {"acc": [0.6]}, "n2": {"acc": [0.8]}}}
    assert reopened.results("metrics", 0) == {0: {"n1": {"acc": [0.5]}, "n2": {"acc": [0.7]}}}
    assert reopened.results("metrics", 7) == {}


def test_reopen_raw_results(reopened: RunStore) -> None:
    """raw_results gives the encoded bytes per node for one iteration and tag."""
    raw = reopened.raw_results(0, "metrics")
    assert raw == {"n1": codec.encode({"acc": [0.5]}), "n2": codec.encode({"acc": [0.7]})}
    assert reopened.raw_results(0, "nothing") == {}


def test_reopen_step_results(reopened: RunStore) -> None:
    """step_results lists (node, tag, sha, size) of one step, sorted by node then tag."""
    rows = reopened.step_results(0, "worker")
    assert [(node, tag) for node, tag, _, _ in rows] == [("n1", "metrics"), ("n2", "metrics")]
    for node, _, sha, size in rows:
        data = codec.encode({"acc": [0.5 if node == "n1" else 0.7]})
        assert sha == sha256(data)
        assert size == len(data)
    assert reopened.step_results(0, "nope") == []


def test_reopen_global_value(reopened: RunStore) -> None:
    """global_value gives the latest version, or the one an iteration ended with."""
    assert reopened.global_value("model") == "model-1"
    assert reopened.global_value("model", 0) == "model-0"
    assert reopened.global_value("model", 1) == "model-1"
    assert reopened.global_value("model", 50) == "model-1"  # unchanged since iteration 1


def test_global_value_unknown(reopened: RunStore) -> None:
    """An unknown tag, or an iteration before the first version, is a KeyError."""
    with pytest.raises(KeyError):
        reopened.global_value("nope")
    with pytest.raises(KeyError):
        reopened.global_value("model", -1)


def test_global_value_carries_over_iterations(store: RunStore) -> None:
    """A global not rewritten in an iteration keeps its earlier value at that iteration."""
    store.set_globals(0, {"a": put(store, 1), "b": put(store, "b0")})
    store.set_globals(2, {"a": put(store, 3)})
    assert store.global_value("a", 1) == 1
    assert store.global_value("a", 2) == 3
    assert store.global_value("b", 2) == "b0"


def test_reopen_runs_summary_tags_iterations(reopened: RunStore) -> None:
    """runs() lists every task run with ok as a bool; summary/tags/iterations describe the run."""
    runs = reopened.runs()
    assert len(runs) == 7
    assert runs[0] == {"iteration": 0, "task": "worker", "node": "n1", "ok": True, "error": "", "duration": 1.0}
    failed = [r for r in runs if not r["ok"]]
    assert failed == [{"iteration": 1, "task": "worker", "node": "n3", "ok": False, "error": "boom", "duration": 2.0}]
    assert all(isinstance(r["ok"], bool) for r in runs)
    assert [r["iteration"] for r in runs] == sorted(r["iteration"] for r in runs)
    assert reopened.tags() == ["metrics", "weights"]
    assert reopened.iterations() == [0, 1]
    assert reopened.summary() == {
        "swarm": DESCRIPTION,
        "final": {"state": "completed"},
        "iterations": 2,
        "tags": ["metrics", "weights"],
        "failed_runs": 1,
        "quarantined": [],
    }


def test_summary_of_empty_run(store: RunStore) -> None:
    """A fresh run summarises to zero iterations, no tags, no failures."""
    empty = {"swarm": DESCRIPTION, "final": {}, "iterations": 0, "tags": [], "failed_runs": 0, "quarantined": []}
    assert store.summary() == empty


def test_add_result_replaces_same_key(store: RunStore) -> None:
    """Writing the same (iteration, task, node, tag) again replaces the value."""
    store.add_result(0, "worker", "n1", "m", put(store, 1))
    store.add_result(0, "worker", "n1", "m", put(store, 2))
    assert store.results("m") == {0: {"n1": 2}}
    assert len(store.step_results(0, "worker")) == 1


def test_latest_task_wins_per_node(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """When two tasks of one iteration wrote the same tag for a node, readers see the later one."""
    import manta_mqtt.coordinator.store as store_module

    clock = iter(range(1000, 2000))
    monkeypatch.setattr(store_module, "time", type("Clock", (), {"time": staticmethod(lambda: next(clock))}))
    store.add_result(0, "zeta", "n1", "m", put(store, "first"))
    store.add_result(0, "alpha", "n1", "m", put(store, "second"))
    assert store.raw_results(0, "m") == {"n1": codec.encode("second")}
    assert store.results("m") == {0: {"n1": "second"}}


def test_add_run_replaces_same_key(store: RunStore) -> None:
    """A second report of the same run replaces the first (one row per iteration, task, node)."""
    store.add_run(0, "worker", "n1", False, "timeout", 9.0)
    store.add_run(0, "worker", "n1", True, "", 1.0)
    assert store.runs() == [{"iteration": 0, "task": "worker", "node": "n1", "ok": True, "error": "", "duration": 1.0}]


def test_values_are_content_addressed(store: RunStore) -> None:
    """The same bytes stored twice give the same sha and one file; numpy values round-trip."""
    data = codec.encode({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    before = len(blob_files(store.root / "blobs"))
    sha1 = store.put_value(data)
    sha2 = store.put_value(data)
    assert sha1 == sha2 == sha256(data)
    assert len(blob_files(store.root / "blobs")) == before + 1
    for node in ("n1", "n2", "n3"):
        store.add_result(0, "worker", node, "w", sha1)
    assert len(blob_files(store.root / "blobs")) == before + 1
    values = store.results("w", 0)[0]
    assert set(values) == {"n1", "n2", "n3"}
    np.testing.assert_array_equal(values["n2"]["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_add_result_needs_stored_blob(store: RunStore) -> None:
    """A result can only point at a value already in the blob store."""
    with pytest.raises(FileNotFoundError):
        store.add_result(0, "worker", "n1", "m", "0" * 64)


# --- BlobStore -------------------------------------------------------------------------------


def test_blobstore_put_get_contains(tmp_path: Path) -> None:
    """put stores under <sha[:2]>/<sha>, get returns the bytes, `in` knows it."""
    blobs = BlobStore(tmp_path / "b")
    data = b"hello blobs"
    sha = blobs.put(data)
    assert sha == sha256(data)
    assert blobs.path(sha) == (tmp_path / "b" / sha[:2] / sha).resolve()
    assert blobs.get(sha) == data
    assert sha in blobs
    assert "0" * 64 not in blobs
    assert 42 not in blobs


def test_blobstore_accepts_bytes_likes(tmp_path: Path) -> None:
    """bytearray and memoryview store the same blob as bytes."""
    blobs = BlobStore(tmp_path)
    assert blobs.put(bytearray(b"abc")) == blobs.put(memoryview(b"abc")) == blobs.put(b"abc")
    assert len(blob_files(tmp_path)) == 1


def test_blobstore_verifies_given_sha(tmp_path: Path) -> None:
    """A given sha must match the bytes: a mismatch raises and stores nothing."""
    blobs = BlobStore(tmp_path / "b")
    data = b"payload"
    assert blobs.put(data, sha256(data)) == sha256(data)
    with pytest.raises(ValueError, match="sha256"):
        blobs.put(b"tampered", sha256(data))
    with pytest.raises(ValueError):
        blobs.put(b"other", sha256(b"different"))
    assert blob_files(tmp_path / "b") == [blobs.path(sha256(data))]


def test_blobstore_no_temp_files_left(tmp_path: Path) -> None:
    """Successful writes leave only final blobs (no .tmp- files)."""
    blobs = BlobStore(tmp_path)
    for i in range(20):
        blobs.put(os.urandom(64) + bytes([i]))
    blobs.put(b"same")
    blobs.put(b"same")
    files = blob_files(tmp_path)
    assert len(files) == 21
    assert not [f for f in files if f.name.startswith(".tmp-")]
    assert all(f.name == sha256(f.read_bytes()) for f in files)


def test_blobstore_failed_write_is_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the final rename fails, the temp file is removed and no blob appears under its name."""
    blobs = BlobStore(tmp_path)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        blobs.put(b"doomed")
    assert sha256(b"doomed") not in blobs
    assert blob_files(tmp_path) == []


def test_blobstore_root_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative root is resolved at construction, so later chdirs do not move the store."""
    monkeypatch.chdir(tmp_path)
    blobs = BlobStore("rel")
    sha = blobs.put(b"x")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert blobs.get(sha) == b"x"
    assert blobs.root == (tmp_path / "rel").resolve()


# --- CoordinatorHost -------------------------------------------------------------------------


def host(store: RunStore, refs: dict[str, str], iteration: int = 0, task: str = "agg") -> CoordinatorHost:
    return CoordinatorHost(store, "swarm-1", iteration, task, refs)


def test_host_context(store: RunStore) -> None:
    """The coordinator host presents itself as node 'coordinator' with no datasets."""
    assert host(store, {}, iteration=4).context() == {
        "node": "coordinator",
        "swarm": "swarm-1",
        "iteration": 4,
        "task": "agg",
        "datasets": {},
    }


def test_host_reads_a_snapshot_and_collects_global_writes(store: RunStore) -> None:
    """set_global stores the value and is collected (the task reads it back); the refs the host
    was given, and other hosts, never change under a running task."""
    refs = {"model": put(store, "v0")}
    first = host(store, refs, task="agg")
    second = host(store, refs, task="sched")
    assert codec.decode(value_bytes(first.get_global("model"))) == "v0"
    first.set_global("model", CannedPayload(codec.encode("v1")))
    first.set_global("extra", CannedPayload(b"raw"))
    assert codec.decode(value_bytes(first.get_global("model"))) == "v1"
    assert value_bytes(first.get_global("extra")) == b"raw"
    assert refs == {"model": put(store, "v0")}
    assert codec.decode(value_bytes(second.get_global("model"))) == "v0"
    with pytest.raises(KeyError):
        second.get_global("extra")
    writes = first.writes()
    assert writes.global_refs == {"model": sha256(codec.encode("v1")), "extra": sha256(b"raw")}
    assert store.blobs.get(writes.global_refs["extra"]) == b"raw"


def test_host_results_within_iteration(store: RunStore) -> None:
    """add_result is visible to select_results in the same task, alongside node results; it is
    recorded in the store only when the engine takes the task's writes."""
    store.add_result(2, "worker", "n1", "metrics", put(store, {"acc": 0.9}))
    agg = host(store, {}, iteration=2)
    agg.add_result("metrics", CannedPayload(codec.encode({"acc": 0.5})))
    selected = agg.select_results("metrics")
    assert {node: codec.decode(v) for node, v in selected.items()} == {
        "n1": {"acc": 0.9},
        COORDINATOR_NODE: {"acc": 0.5},
    }
    assert host(store, {}, iteration=3).select_results("metrics") == {}
    assert store.step_results(2, "agg") == []
    assert agg.writes().results == {"metrics": sha256(codec.encode({"acc": 0.5}))}


def test_host_collects_schedule_and_stop(store: RunStore) -> None:
    """schedule_next_iter and stop_swarm are collected for the engine, in call order."""
    sched = host(store, {}, task="sched")
    sched.schedule_next_iter(["n1", "n2"], "worker")
    sched.schedule_next_iter(["n2", "n3"], "worker")
    with pytest.raises(TaskHostError):
        sched.schedule_next_iter(["n1"], "")
    assert not sched.writes().stop
    sched.stop_swarm()
    writes = sched.writes()
    assert writes.schedule == [("worker", ["n1", "n2"]), ("worker", ["n2", "n3"])]
    assert writes.stop


# --- metrics.summarize -----------------------------------------------------------------------


def test_summarize_means_of_last_values() -> None:
    """Each metric is the mean over nodes of its last value (lists) or its value (scalars)."""
    values = {
        "n1": {"val_acc": [0.1, 0.5, 0.9], "loss": 0.2, "epochs": 3},
        "n2": {"val_acc": (0.2, 0.7), "loss": 0.4},
    }
    assert summarize(values) == pytest.approx({"epochs": 3.0, "loss": 0.3, "val_acc": 0.8})
    assert list(summarize(values)) == ["epochs", "loss", "val_acc"]


def test_summarize_ignores_non_numbers() -> None:
    """Strings, None, bools, NaN/inf, empty lists, nested values and non-str keys are ignored."""
    values = {
        "n1": {
            "acc": 1.0,
            "name": "resnet",
            "none": None,
            "flag": True,
            "flags": [False, True],
            "nan": math.nan,
            "inf": [1.0, math.inf],
            "ninf": -math.inf,
            "empty": [],
            "nested": {"x": 1},
            "listlast": [[1, 2]],
            7: 1.0,
        },
        "n2": {"acc": 0.0, "nan": 2.0},
    }
    assert summarize(values) == {"acc": 0.5, "nan": 2.0}


def test_summarize_ignores_non_dict_values() -> None:
    """Node values that are not dicts (bytes, lists, numbers, None) are skipped."""
    values = {"n1": b"raw", "n2": [0.5], "n3": 3.0, "n4": None, "n5": {"acc": 0.25}}
    assert summarize(values) == {"acc": 0.25}
    assert summarize({}) == {}
    assert summarize({"n1": b"x"}) == {}


def test_summarize_numpy_float_scalars() -> None:
    """numpy float64 scalars (a float subclass) count as numbers."""
    assert summarize({"n1": {"acc": np.float64(0.5)}, "n2": {"acc": [np.float64(1.0)]}}) == {"acc": 0.75}
