"""An aggregator reads results one node per channel request: ``results.select`` has no cap on
the total (3 x 100 MiB here, over the 256 MiB a single frame could carry), and
``results.iter`` holds one node's value at a time, measured as the task process's peak RSS.

The tasks run in real child processes through the executor, answered by the coordinator's own
host (``CoordinatorHost``) over a real ``RunStore``: the path a coordinator-placed task takes,
without the MQTT swarm around it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from manta_mqtt.coordinator.engine import COORDINATOR_NODE
from manta_mqtt.coordinator.host import CoordinatorHost
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.protocol import codec
from manta_mqtt.runtime.executor import TaskOutcome, run_task

from .payloads import CannedPayload, value_bytes
from .test_runtime_executor import bundle

MiB = 1 << 20
VALUE = 100 * MiB  # one node's model
NODES = {"n1": 1, "n2": 2, "n3": 3}  # node -> its number of samples, and the value of its model
ITERATION = 4

#: Reads /proc/self/status: VmHWM is this process's peak resident memory since its exec.
PEAK = """
def peak_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")
"""


def update(node: str) -> dict[str, Any]:
    return {"model": {"w": np.full(VALUE // 4, NODES[node], np.float32)}, "num_samples": NODES[node]}


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunStore]:
    """A run whose iteration holds three 100 MiB updates (and one small metric per node)."""
    store = RunStore.create(tmp_path_factory.mktemp("runs"), "big", {})
    for node in NODES:
        store.add_result(ITERATION, "worker", node, "update", store.put_value(codec.encode(update(node))))
        store.add_result(ITERATION, "worker", node, "metrics", store.put_value(codec.encode({"n": NODES[node]})))
    yield store
    store.close()


def run_aggregator(store: RunStore, tmp_path: Path, body: str) -> tuple[TaskOutcome, dict[str, Any]]:
    """Run a coordinator task whose ``run`` is ``body``; return its outcome and the results it added."""
    source = (
        "import numpy as np\nfrom manta_light.task import Task\nfrom manta_light.utils import fedavg\n"
        f"{PEAK}\nclass Agg(Task):\n    def run(self):\n"
        + "".join(f"        {line}\n" for line in textwrap.dedent(body).strip().splitlines())
        + "\ndef main():\n    Agg().run()\n"
    )
    host = CoordinatorHost(store, "big", ITERATION, "agg", {})
    outcome = run_task(bundle(tmp_path, source), "usertask", host, timeout=300.0, workdir=tmp_path / "w", label="agg")
    added = {tag: store.value(sha) for tag, sha in host.writes().results.items()}
    return outcome, added


def test_the_values_exceed_what_one_frame_carries(big_store: RunStore) -> None:
    total = sum(len(raw) for raw in big_store.raw_results(ITERATION, "update").values())
    assert total > codec.MAX_MESSAGE_BYTES


def test_select_over_256_mib_returns_every_node(big_store: RunStore, tmp_path: Path) -> None:
    """The seed's form, unchanged: a dict of every node's value, here 300 MiB of them."""
    outcome, added = run_aggregator(
        big_store,
        tmp_path,
        """
        models = self.world.results.select("update")
        ws = {n: v["model"]["w"] for n, v in models.items()}
        seen = {n: [float(w[0]), float(w[-1]), w.nbytes] for n, w in ws.items()}
        self.world.results.add("seen", {"seen": seen, "peak": peak_rss()})
        """,
    )
    assert outcome.ok, outcome.error
    assert added["seen"]["seen"] == {node: [float(n), float(n), VALUE] for node, n in NODES.items()}
    print(f"select: peak RSS {added['seen']['peak'] / MiB:.0f} MiB")
    # holding all three is what iter() avoids: this peak is what the lazy bound below must beat
    assert added["seen"]["peak"] > 3 * VALUE


def test_iter_holds_one_value_at_a_time(big_store: RunStore, tmp_path: Path) -> None:
    outcome, added = run_aggregator(
        big_store,
        tmp_path,
        """
        before = peak_rss()
        seen = []
        for node, value in self.world.results.iter("update"):
            seen.append((node, float(value["model"]["w"].mean()), value["num_samples"]))
            del value
        self.world.results.add("seen", {"seen": seen, "before": before, "peak": peak_rss()})
        """,
    )
    assert outcome.ok, outcome.error
    assert added["seen"]["seen"] == [[node, float(n), n] for node, n in NODES.items()]
    peak = added["seen"]["peak"]
    print(f"iter: peak RSS {peak / MiB:.0f} MiB (before reading {added['seen']['before'] / MiB:.0f} MiB)")
    assert peak < 2.5 * VALUE + 100 * MiB


def test_fedavg_over_iter_grows_with_the_model_not_the_nodes(big_store: RunStore, tmp_path: Path) -> None:
    """One running sum (one model) plus one node's value in flight, never all three."""
    outcome, added = run_aggregator(
        big_store,
        tmp_path,
        """
        mean = fedavg(self.world.results.iter("update"))
        w = mean["w"]
        summary = {"first": float(w[0]), "last": float(w[-1]), "dtype": str(w.dtype), "size": w.nbytes}
        self.world.results.add("mean", {**summary, "peak": peak_rss()})
        """,
    )
    assert outcome.ok, outcome.error
    expected = sum(n * n for n in NODES.values()) / sum(NODES.values())  # values weighted by themselves
    mean = added["mean"]
    assert mean["first"] == pytest.approx(expected, rel=1e-6) and mean["last"] == pytest.approx(expected, rel=1e-6)
    assert (mean["dtype"], mean["size"]) == ("float32", VALUE)
    print(f"fedavg: peak RSS {mean['peak'] / MiB:.0f} MiB")
    assert mean["peak"] < 3.5 * VALUE + 100 * MiB  # the sums (1 x) + a value arriving (2 x)


def test_small_results_node_order_size_and_missing_node(big_store: RunStore, tmp_path: Path) -> None:
    """nodes() lists without reading, size keeps the first nodes by id, get() of a node that added
    nothing is a KeyError in the task, and the task's own result is among what it reads."""
    outcome, added = run_aggregator(
        big_store,
        tmp_path,
        """
        self.world.results.add("metrics", {"n": 0})
        assert self.world.results.nodes("metrics") == ["coordinator", "n1", "n2", "n3"]
        assert list(self.world.results.select("metrics", size=2)) == ["coordinator", "n1"]
        assert [node for node, _ in self.world.results.iter("metrics", size=3)] == ["coordinator", "n1", "n2"]
        assert self.world.results.get("metrics", "n2") == {"n": 2}
        try:
            self.world.results.get("metrics", "n9")
        except KeyError as exc:
            assert "n9" in str(exc)
        else:
            raise AssertionError("no KeyError")
        assert self.world.results.nodes("nothing") == [] and self.world.results.select("nothing") == {}
        self.world.results.add("ok", True)
        """,
    )
    assert outcome.ok, outcome.error
    assert added["ok"] is True


def test_host_reads_one_node_and_honours_quarantine(big_store: RunStore) -> None:
    """result_nodes and get_result see what select_results sees: no excluded node, the probed
    ones only, and the task's own result."""
    host = CoordinatorHost(big_store, "big", ITERATION, "agg", {}, exclude=frozenset({"n2"}))
    assert host.result_nodes("metrics") == ["n1", "n3"]
    with pytest.raises(KeyError):
        host.get_result("metrics", "n2")
    probe = CoordinatorHost(big_store, "big", ITERATION, "agg", {}, only=frozenset({"n3"}))
    probe.add_result("metrics", CannedPayload(codec.encode({"n": 0})))
    assert probe.result_nodes("metrics") == [COORDINATOR_NODE, "n3"]
    assert codec.decode(value_bytes(probe.get_result("metrics", COORDINATOR_NODE))) == {"n": 0}
    assert set(probe.select_results("metrics")) == set(probe.result_nodes("metrics"))
