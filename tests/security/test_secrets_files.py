"""A run's store and a node's cache, outbox and data dir are private: folders 0700, files 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_node.agent import EdgeAgent
from edge_node.config import NodeConfig
from edge_node.outbox import Entry, Outbox
from manta_mqtt.blobstore import BlobStore, private_dir
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import codec


@pytest.fixture(params=[0o000, 0o022, 0o277])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Whatever the umask (0: world-writable files; 0o277: not even writable by us), the modes are the same."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """``{relative path: permission bits}`` of ``root`` and everything under it."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[path.relative_to(root).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    found = modes(root)
    wrong = {p: f"{m:04o}" for p, m in found.items() if m != (0o700 if (root / p).is_dir() else 0o600)}
    assert not wrong, f"not private under {root}: {wrong}"


def test_a_run_store_is_private(tmp_path: Path, umask: int) -> None:
    store = RunStore.create(tmp_path / "runs", "swarm-1", {"name": "s"})
    sha = store.put_value(codec.encode({"w": [1, 2, 3]}))
    store.add_result(0, "worker", "n1", "model", sha)
    store.add_run(0, "worker", "n1", True, "", 1.0)
    names = set(modes(tmp_path / "runs"))
    store.close()
    assert {"swarm-1/index.sqlite", "swarm-1/index.sqlite-wal", f"swarm-1/blobs/{sha[:2]}/{sha}"} <= names
    assert_private(tmp_path / "runs")
    assert RunStore.open(tmp_path / "runs" / "swarm-1").results("model") == {0: {"n1": {"w": [1, 2, 3]}}}


def test_a_run_folder_is_never_reused(tmp_path: Path) -> None:
    RunStore.create(tmp_path, "swarm-1", {}).close()
    with pytest.raises(FileExistsError):
        RunStore.create(tmp_path, "swarm-1", {})


def test_a_node_keeps_its_data_private(tmp_path: Path, umask: int) -> None:
    """The agent's data dir (and so the task working dirs in it), its cache and its outbox."""
    config = NodeConfig.from_dict({"node": {"id": "pi-1", "data_dir": str(tmp_path / "home" / "pi-1")}}, tmp_path)
    agent = EdgeAgent(config)
    agent.cache.put(b"code bundle")
    agent.worker.outbox.put(Entry(("s", 0, "worker", 0), b"envelope", []))
    entry = Entry(("s", 1, "worker", 0), b"envelope", [])
    agent.worker.outbox.put(entry)
    agent.worker.outbox.mark_sent(entry)
    found = modes(tmp_path / "home")
    assert {"pi-1/cache", "pi-1/outbox/pending/s__0__worker__0", "pi-1/outbox/sent/s__1__worker__0"} <= set(found)
    assert_private(tmp_path / "home")


def test_private_dir_leaves_what_exists_alone(tmp_path: Path, umask: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    private_dir(shared / "a" / "b")
    assert modes(shared) == {".": 0o755, "a": 0o700, "a/b": 0o700}
    private_dir(shared / "a" / "b")  # again: nothing to do
    (shared / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        private_dir(shared / "file")


def test_blob_files_are_0600(tmp_path: Path, umask: int) -> None:
    store = BlobStore(tmp_path / "blobs")
    sha = store.put(b"x")
    assert stat.S_IMODE(store.path(sha).stat().st_mode) == 0o600
    assert_private(tmp_path / "blobs")


def test_an_outbox_alone_is_private(tmp_path: Path, umask: int) -> None:
    Outbox(tmp_path / "outbox").put(Entry(("s", 0, "t", 0), b"e", []))
    assert_private(tmp_path / "outbox")
