"""Entry point of a task process: ``python -m manta_mqtt.runtime.child BUNDLE ENTRY``.

The process waits for ``run`` frames on its channel. On the first it imports ``ENTRY`` from the
code bundle (a zip on ``sys.path``); on each it takes the run's context, calls ``main()`` and
reports the outcome (a traceback travels back when ``main()`` raises). The module stays
imported between runs: its globals persist, objects built inside ``main()`` are new each run.
It exits after a run marked ``last``, or when the host closes the channel. A sentinel
(:mod:`.sentinel`) kills the task's process group if the host dies first.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import sentinel
from .channel import ChannelClosed
from .client import MARK_ENV, TaskClient, current
from .ops import Op


def main(argv: list[str]) -> int:
    bundle, entry = argv[1], argv[2]
    guard = os.environ.pop(sentinel.GUARD_ENV, None)
    if guard is not None:  # before any user code: this process and its children end with the host
        sentinel.start(int(guard))
    mark = os.environ.pop(MARK_ENV, "")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    client = current()
    sys.path.insert(0, bundle)
    task: Callable[[], Any] | None = None
    while True:
        request = _next_run(client)
        if request is None:
            return 0  # the host closed the channel: this process is retired
        client.begin(request.get("context"))
        try:
            if task is None:  # imported in the first run, so its module code sees a context
                task = _load(entry)
            task()
        except BaseException:  # report everything the user's code raised, SystemExit included
            _mark(mark, request.get("run"))
            client.finish(Op.FAILED, traceback=traceback.format_exc())
            ok = False
        else:
            _mark(mark, request.get("run"))
            client.finish(Op.DONE)
            ok = True
        if request.get("last"):
            return 0 if ok else 1


def _next_run(client: TaskClient) -> dict[str, Any] | None:
    """The next ``run`` frame, or None once the host has closed the channel."""
    try:
        request = client.channel.recv().message
    except (ChannelClosed, OSError):
        return None
    if not isinstance(request, dict) or Op.parse(request.get("op")) is not Op.RUN:
        raise RuntimeError(f"expected a run request from the host, got {request!r:.200}")
    return request


def _load(entry: str) -> Callable[[], Any]:
    module = importlib.import_module(entry)
    run = getattr(module, "main", None)
    if not callable(run):
        raise AttributeError(f"module {entry!r} has no main() function")
    return run  # type: ignore[no-any-return]


def _mark(mark: str, run: Any) -> None:
    """End this run's output with the mark line (runtime/output.py), after what it printed."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    if mark and isinstance(run, int):
        with contextlib.suppress(OSError):
            os.write(1, f"{mark} {run}\n".encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
