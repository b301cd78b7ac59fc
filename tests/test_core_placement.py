"""Node placement as a pure function: eligible_nodes and select_nodes (Manta scheduling rules)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from manta_mqtt.coordinator.engine.placement import eligible_nodes, select_nodes
from manta_mqtt.swarm import Module, Task

ONLINE = {
    "n5": ["mnist", "cifar"],
    "n1": ["mnist"],
    "n3": ["mnist", "cifar"],
    "n2": [],
    "n4": ["cifar"],
}
ALL = ["n1", "n2", "n3", "n4", "n5"]


@pytest.fixture
def make_task(tmp_path: Path):
    """Build a Task around a throwaway module needing ``datasets``."""

    def build(datasets: list[str] | None = None, **kwargs) -> Task:
        file = tmp_path / "worker.py"
        file.write_text("def main():\n    pass\n")
        return Task(Module(file, datasets=datasets or []), **kwargs)

    return build


# --- eligible_nodes --------------------------------------------------------------------------


def test_eligible_without_requirements_is_all_sorted(make_task) -> None:
    """No datasets and no id filters: every online node, sorted by id."""
    assert eligible_nodes(make_task(), ONLINE) == ALL


def test_eligible_filters_by_datasets(make_task) -> None:
    """A node must have every dataset the module needs."""
    assert eligible_nodes(make_task(["mnist"]), ONLINE) == ["n1", "n3", "n5"]
    assert eligible_nodes(make_task(["mnist", "cifar"]), ONLINE) == ["n3", "n5"]
    assert eligible_nodes(make_task(["imagenet"]), ONLINE) == []


def test_eligible_specified_ids(make_task) -> None:
    """specified_ids restricts to those ids that are online and otherwise eligible."""
    task = make_task(["mnist"], specified_ids=["n5", "n4", "n1", "offline"])
    assert eligible_nodes(task, ONLINE) == ["n1", "n5"]


def test_eligible_excepted_ids(make_task) -> None:
    """excepted_ids removes nodes."""
    assert eligible_nodes(make_task(excepted_ids=["n2", "n5", "ghost"]), ONLINE) == ["n1", "n3", "n4"]


def test_eligible_specified_and_excepted(make_task) -> None:
    """Both filters combine: specified first, then excepted."""
    task = make_task(specified_ids=["n1", "n2", "n3"], excepted_ids=["n2"])
    assert eligible_nodes(task, ONLINE) == ["n1", "n3"]


def test_eligible_empty_filters_mean_no_filter(make_task) -> None:
    """Empty specified/excepted lists do not filter anything."""
    assert eligible_nodes(make_task(specified_ids=[], excepted_ids=[]), ONLINE) == ALL


def test_eligible_no_nodes_online(make_task) -> None:
    """With no node online nothing is eligible."""
    assert eligible_nodes(make_task(), {}) == []


# --- select_nodes ----------------------------------------------------------------------------


def test_select_method_any_picks_one(make_task) -> None:
    """method any runs on exactly one eligible node."""
    chosen = select_nodes(make_task(["mnist"], method="any"), ONLINE, rng=random.Random(1))
    assert len(chosen) == 1
    assert chosen[0] in {"n1", "n3", "n5"}


def test_select_method_all_unlimited_returns_all_eligible(make_task) -> None:
    """method all with no maximum returns every eligible node, sorted."""
    assert select_nodes(make_task(["cifar"]), ONLINE) == ["n3", "n4", "n5"]


def test_select_maximum_count(make_task) -> None:
    """An int maximum caps the number of nodes; the pick is a sorted subset of the eligible ones."""
    chosen = select_nodes(make_task(maximum=2), ONLINE, rng=random.Random(7))
    assert len(chosen) == 2
    assert chosen == sorted(chosen)
    assert set(chosen) <= set(ALL)


def test_select_maximum_fraction(make_task) -> None:
    """A fractional maximum takes ceil(fraction * eligible) nodes."""
    assert len(select_nodes(make_task(maximum=0.5), ONLINE, rng=random.Random(3))) == 3  # ceil(2.5)
    assert len(select_nodes(make_task(maximum=0.2), ONLINE, rng=random.Random(3))) == 1
    assert select_nodes(make_task(maximum=1.0), ONLINE) == ALL


def test_select_cap_at_or_above_eligible_returns_all(make_task) -> None:
    """When the cap reaches the number of eligible nodes all of them run, whatever the rng."""
    for maximum in (3, 4, 100):
        assert select_nodes(make_task(["mnist"], maximum=maximum), ONLINE, rng=random.Random(5)) == ["n1", "n3", "n5"]


def test_select_reproducible_with_seeded_rng(make_task) -> None:
    """The same seed gives the same sample; the default rng is deterministic too."""
    task = make_task(maximum=2)
    online = {f"node{i:02d}": [] for i in range(30)}
    first = select_nodes(task, online, rng=random.Random(1234))
    assert select_nodes(task, online, rng=random.Random(1234)) == first
    assert select_nodes(task, online) == select_nodes(task, online)
    samples = {tuple(select_nodes(task, online, rng=random.Random(seed))) for seed in range(20)}
    assert len(samples) > 1  # the rng really drives the choice


def test_select_respects_filters(make_task) -> None:
    """A sample is always drawn from the eligible nodes only."""
    task = make_task(["mnist"], excepted_ids=["n3"], maximum=1)
    for seed in range(10):
        assert select_nodes(task, ONLINE, rng=random.Random(seed))[0] in {"n1", "n5"}


def test_select_no_eligible_nodes(make_task) -> None:
    """With no eligible node the selection is empty (for every method and maximum)."""
    assert select_nodes(make_task(["imagenet"]), ONLINE) == []
    assert select_nodes(make_task(method="any"), {}) == []
    assert select_nodes(make_task(maximum=0.5), {}) == []
    assert select_nodes(make_task(maximum=2, fixed=True), {}, previous=["n1"]) == []


def test_select_fixed_keeps_previous_nodes(make_task) -> None:
    """A fixed task keeps its previous nodes while they stay eligible, whatever the rng says."""
    task = make_task(maximum=2, fixed=True)
    for seed in range(10):
        assert select_nodes(task, ONLINE, previous=["n4", "n2"], rng=random.Random(seed)) == ["n2", "n4"]


def test_select_fixed_keeps_the_ones_still_eligible(make_task) -> None:
    """When some previous nodes went away, a fixed task keeps the remaining ones."""
    task = make_task(["mnist"], maximum=2, fixed=True)
    online = {k: v for k, v in ONLINE.items() if k != "n3"}
    assert select_nodes(task, online, previous=["n3", "n5"], rng=random.Random(0)) == ["n5"]


def test_select_fixed_falls_back_when_previous_gone(make_task) -> None:
    """When none of the previous nodes is eligible any more, a fixed task picks afresh."""
    task = make_task(["mnist"], maximum=2, fixed=True)
    chosen = select_nodes(task, ONLINE, previous=["n2", "n4", "gone"], rng=random.Random(0))
    assert len(chosen) == 2
    assert set(chosen) <= {"n1", "n3", "n5"}


def test_select_fixed_without_previous_selects_normally(make_task) -> None:
    """The first run of a fixed task (no previous) is an ordinary selection."""
    task = make_task(maximum=2, fixed=True)
    assert select_nodes(task, ONLINE, rng=random.Random(9)) == select_nodes(
        make_task(maximum=2), ONLINE, rng=random.Random(9)
    )
    assert len(select_nodes(task, ONLINE, previous=[], rng=random.Random(9))) == 2


def test_select_fixed_caps_kept_nodes(make_task) -> None:
    """A fixed task never keeps more previous nodes than its cap allows."""
    task = make_task(method="any", fixed=True)
    assert select_nodes(task, ONLINE, previous=["n3", "n1"]) == ["n1"]


def test_select_non_fixed_ignores_previous(make_task) -> None:
    """previous only matters for fixed tasks."""
    task = make_task(maximum=2)
    assert select_nodes(task, ONLINE, previous=["n1", "n2"], rng=random.Random(4)) == select_nodes(
        task, ONLINE, rng=random.Random(4)
    )
