"""The task runtime in real child processes: the manta_light API over the channel, and every way
a task can end (return, raise, crash, hang, cancel) coming back as an outcome, never as a crash.
"""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from manta_mqtt.protocol import codec
from manta_mqtt.runtime.channel import Payload
from manta_mqtt.runtime.executor import run_task
from manta_mqtt.runtime.host import TaskHostError


class MemoryHost:
    """A complete TaskHost over dicts: the agent and coordinator hosts do the same over disk."""

    def __init__(self, datasets: dict[str, str] | None = None) -> None:
        self.globals: dict[str, bytes] = {"x": codec.encode(41), "arr": codec.encode(np.arange(5))}
        self.results: dict[str, bytes] = {}
        self.others = {"peer": codec.encode({"acc": 0.5})}
        self.schedule: list[tuple[str, list[str]]] = []
        self.stopped = False
        self.datasets = datasets or {}

    def context(self) -> dict[str, Any]:
        return {"node": "me", "swarm": "s", "iteration": 7, "task": "t", "datasets": self.datasets}

    def get_global(self, tag: str) -> bytes:
        return self.globals[tag]

    def set_global(self, tag: str, value: Payload) -> None:
        self.globals[tag] = bytes(value.read())

    def add_result(self, tag: str, value: Payload) -> None:
        self.results[tag] = bytes(value.read())

    def select_results(self, tag: str) -> dict[str, bytes]:
        if tag == "forbidden":
            raise TaskHostError("not here")
        return {**self.others, **({"me": self.results[tag]} if tag in self.results else {})}

    def schedule_next_iter(self, node_ids: list[str], alias: str) -> None:
        self.schedule.append((alias, node_ids))

    def stop_swarm(self) -> None:
        self.stopped = True


def bundle(tmp_path: Path, source: str, name: str = "usertask") -> Path:
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.py", source)
    return path


def run(tmp_path: Path, source: str, host: MemoryHost | None = None, **kwargs: Any) -> tuple[Any, MemoryHost]:
    host = host or MemoryHost()
    options: dict[str, Any] = {"timeout": 60.0, "workdir": tmp_path / "work", "label": "test"}
    options.update(kwargs)
    return run_task(bundle(tmp_path, source), "usertask", host, **options), host


API_TASK = """
import numpy as np
from manta_light.task import Task
from manta_light.utils import numpy_to_bytes, bytes_to_numpy

class T(Task):
    def run(self):
        assert self.world.iteration == 7 and self.node_id == "me" and self.task_id == "t"
        x = self.world.globals["x"]
        arr = self.world.globals["arr"]
        self.world.globals["x"] = x + 1
        assert self.world.globals["x"] == 42          # reads back its own write
        try:
            self.world.globals["missing"]
        except KeyError:
            pass
        else:
            raise AssertionError("unknown global did not raise KeyError")
        self.world.results.add("m", {"sum": int(arr.sum()), "w": numpy_to_bytes({"a": np.ones(3)})})
        sel = self.world.results.select("m")
        assert sorted(sel) == ["me", "peer"], sel
        assert bytes_to_numpy(sel["me"]["w"])["a"].tolist() == [1.0, 1.0, 1.0]
        data = self.local.get_numpy_data("d.npy")
        assert data.tolist() == [0, 1, 2]
        self.world.schedule_next_iter(node_ids=["a", "b"], task_to_schedule_alias="worker")
        self.world.stop_swarm()

def main():
    T().run()
"""


def test_task_api_over_the_channel(tmp_path: Path) -> None:
    """Every manta_light call a task makes reaches the host and comes back right."""
    np.save(tmp_path / "d.npy", np.arange(3))
    host = MemoryHost({"d.npy": str(tmp_path / "d.npy")})
    outcome, host = run(tmp_path, API_TASK, host)
    assert outcome.ok, outcome.error
    assert codec.decode(host.globals["x"]) == 42
    assert codec.decode(host.results["m"])["sum"] == 10
    assert host.schedule == [("worker", ["a", "b"])]
    assert host.stopped


def test_exception_comes_back_with_its_traceback(tmp_path: Path) -> None:
    source = "def main():\n    raise ValueError('bad hyperparameter')\n"
    outcome, _ = run(tmp_path, source)
    assert not outcome.ok
    assert "ValueError: bad hyperparameter" in outcome.error and "Traceback" in outcome.error


def test_host_refusal_is_an_exception_in_the_task(tmp_path: Path) -> None:
    source = "from manta_light.task import Task\ndef main():\n    Task().world.results.select('forbidden')\n"
    outcome, _ = run(tmp_path, source)
    assert not outcome.ok and "RuntimeError: not here" in outcome.error


def test_segfault_is_reported_with_its_signal(tmp_path: Path) -> None:
    source = "import ctypes\ndef main():\n    print('about to crash', flush=True)\n    ctypes.string_at(0)\n"
    outcome, _ = run(tmp_path, source)
    assert not outcome.ok
    assert "SIGSEGV" in outcome.error and "about to crash" in outcome.error


def test_os_exit_without_report_is_a_failure(tmp_path: Path) -> None:
    outcome, _ = run(tmp_path, "import os\ndef main():\n    os._exit(3)\n")
    assert not outcome.ok and "exited with code 3" in outcome.error


def test_hang_is_killed_at_the_timeout(tmp_path: Path) -> None:
    source = (
        "import time, subprocess, sys\n"
        "def main():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "    time.sleep(600)\n"
    )
    started = time.monotonic()
    outcome, _ = run(tmp_path, source, timeout=2.0)
    assert not outcome.ok and "timed out after 2 s" in outcome.error
    assert time.monotonic() - started < 15


def test_cancel_stops_a_running_task(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    outcome, _ = run(tmp_path, "import time\ndef main():\n    time.sleep(600)\n", cancel=cancel)
    assert not outcome.ok and "cancelled" in outcome.error


def test_missing_main_is_reported(tmp_path: Path) -> None:
    outcome, _ = run(tmp_path, "x = 1\n")
    assert not outcome.ok and "has no main()" in outcome.error


def test_package_module_with_relative_import(tmp_path: Path) -> None:
    """Manta's folder modules: ``pkg/__init__.py`` exposes main() and imports siblings relatively."""
    path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/__init__.py", "from .impl import main\n")
        archive.writestr(
            "pkg/impl.py",
            "from .helper import VALUE\nfrom manta_light.task import Task\n"
            "def main():\n    Task().world.results.add('v', VALUE)\n",
        )
        archive.writestr("pkg/helper.py", "VALUE = 'relative import works'\n")
    host = MemoryHost()
    outcome = run_task(path, "pkg", host, timeout=60, workdir=tmp_path / "w")
    assert outcome.ok, outcome.error
    assert codec.decode(host.results["v"]) == "relative import works"
