"""The three tasks in examples/mnist_fl are the seed's code, character for character (up to
whitespace: the seed document lost its indentation)."""

from __future__ import annotations

import re

import pytest

from .conftest import ROOT

SEED = ROOT.parent / "shared" / "seed" / "task_development_fr.txt"
EXAMPLE = ROOT / "examples" / "mnist_fl"


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.skipif(not SEED.exists(), reason=f"the seed document is not beside this checkout ({SEED})")
@pytest.mark.parametrize("path", ["worker/worker_task.py", "aggregator.py", "scheduler.py"])
def test_example_task_is_the_seed_code(path: str) -> None:
    ours = squash((EXAMPLE / path).read_text())
    assert ours and ours in squash(SEED.read_text())
