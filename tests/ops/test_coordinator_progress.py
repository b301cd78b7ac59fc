"""The console of ``manta-mqtt run`` when a task raises on every node: the traceback once, the
other nodes named, a hint, and a final line that does not repeat the traceback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..conftest import BrokerUnderTest
from .test_coordinator_signals import RunProcess, counter_copy, numbers, run_args


def test_the_same_task_error_on_three_nodes_is_printed_once(
    mosquitto: BrokerUnderTest, tmp_path: Path, start_nodes: Any
) -> None:
    start_nodes(mosquitto, ["n1", "n2", "n3"], numbers(tmp_path))
    swarm = counter_copy(tmp_path, "broken")
    (swarm.parent / "worker.py").write_text(
        "from manta_light.task import Task\n\n\ndef main():\n    raise ValueError('the data has the wrong shape')\n"
    )
    run = RunProcess(tmp_path, "run", run_args(swarm, mosquitto, tmp_path / "runs", "--min-nodes", "3"))
    assert run.wait(120) == 1, run.stderr()
    out = run.stdout()
    assert out.count("Traceback (most recent call last)") == 1, out
    assert out.count("ValueError: the data has the wrong shape") == 2, out  # the traceback, the final line
    first = out.index("worker failed on n")
    assert out[first:].startswith(("worker failed on n1:", "worker failed on n2:", "worker failed on n3:"))
    assert re.search(r"warning: worker: same error on n\d, n\d\n", out), out
    assert out.count("hint: the task's own code raised this on the node") == 1
    assert "(traceback above)" in out.strip().splitlines()[-1]
