"""What the person running a swarm sees: one line per step and iteration, and a live bar while
nodes work (when the output is a terminal). Built on rich.

Every text shown here may quote a node (its error text, its metric names), so it goes through
``printable()`` first: an ESC sequence from a hostile node must not rewrite the operator's terminal.
"""

from __future__ import annotations

import re
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..protocol.text import printable

TASK_ERROR_HINT = (
    "the task's own code raised this on the node: fix the task (the traceback above says where); "
    "manta-mqtt results RUN_DIR lists every run and its outcome"
)


def error_key(node: str, error: str) -> str:
    """An error's text without what differs between nodes: their id (in paths too), addresses."""
    return re.sub(r"0x[0-9a-fA-F]+", "0x…", error.replace(node, "{node}")).strip()


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())


class ProgressView(Protocol):
    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def task_error(self, task: str, node: str, error: str) -> None: ...
    def step_started(self, iteration: int, task: str, nodes: list[str]) -> None: ...
    def node_done(self, node: str, ok: bool) -> None: ...
    def step_finished(self, iteration: int, task: str, ok: int, total: int, metrics: dict[str, float]) -> None: ...
    def finished(self, state: str, reason: str, iterations: int) -> None: ...


class ConsoleProgress:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False, highlight=False)
        self._bar: Progress | None = None
        self._bar_task: int | None = None
        self._errors: dict[tuple[str, str], list[str]] = {}  # this step's: (task, error_key) -> nodes
        self._hinted = False

    def info(self, message: str) -> None:
        self.console.print(printable(message), markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(printable(message))}", markup=True, soft_wrap=True)

    def task_error(self, task: str, node: str, error: str) -> None:
        """The first node with an error: its traceback; the others with the same one: named
        once, when the step ends ("same error on n2, n3")."""
        nodes = self._errors.setdefault((task, error_key(node, error)), [])
        nodes.append(node)
        if len(nodes) > 1:
            return
        self.warn(f"{task} failed on {node}:\n{error.rstrip()}")
        if not self._hinted:
            self._hinted = True
            self.console.print(f"hint: {TASK_ERROR_HINT}", markup=False, soft_wrap=True)

    def _flush_errors(self) -> None:
        for (task, _), nodes in self._errors.items():
            if len(nodes) > 1:
                self.warn(f"{task}: same error on {', '.join(sorted(nodes[1:]))}")
        self._errors = {}

    def step_started(self, iteration: int, task: str, nodes: list[str]) -> None:
        self._flush_errors()
        if not self.console.is_terminal:
            return
        self._bar = Progress(
            TextColumn(f"iteration {iteration} · {task}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._bar.start()
        self._bar_task = self._bar.add_task(task, total=len(nodes))

    def node_done(self, node: str, ok: bool) -> None:
        if self._bar is not None and self._bar_task is not None:
            self._bar.advance(self._bar_task)  # type: ignore[arg-type]

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def step_finished(self, iteration: int, task: str, ok: int, total: int, metrics: dict[str, float]) -> None:
        self._close_bar()
        self._flush_errors()
        where = f"{ok}/{total} nodes" if total else "coordinator"
        line = f"iteration {iteration:>3}  {task:<12} {where:<12} {format_metrics(metrics)}"
        self.console.print(printable(line.rstrip()), markup=False, soft_wrap=True)

    def finished(self, state: str, reason: str, iterations: int) -> None:
        self._close_bar()
        self._flush_errors()
        lines = reason.strip().splitlines()
        if len(lines) > 1 and self._hinted:  # a task's traceback, shown above: its last line is enough
            reason = f"{lines[0]} {lines[-1].strip()} (traceback above)"
        text = printable(f"swarm {state} after {iterations} iteration(s): {reason}")
        self.console.print(text, markup=False, soft_wrap=True)
