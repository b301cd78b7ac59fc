"""Entry point of a task process: ``python -m manta_mqtt.runtime.child BUNDLE ENTRY``.

Imports ``ENTRY`` from the code bundle (a zip on ``sys.path``), calls its ``main()`` and reports
the outcome to the host; a traceback travels back when ``main()`` raises. A sentinel
(:mod:`.sentinel`) kills the task's process group if the host dies first.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

from . import sentinel
from .client import current
from .ops import Op


def main(argv: list[str]) -> int:
    bundle, entry = argv[1], argv[2]
    guard = os.environ.pop(sentinel.GUARD_ENV, None)
    if guard is not None:  # before any user code: this process and its children end with the host
        sentinel.start(int(guard))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    client = current()
    sys.path.insert(0, bundle)
    try:
        module = importlib.import_module(entry)
        run = getattr(module, "main", None)
        if not callable(run):
            raise AttributeError(f"module {entry!r} has no main() function")
        run()
    except BaseException:  # report everything the user's code raised, SystemExit included
        client.finish(Op.FAILED, traceback=traceback.format_exc())
        return 1
    client.finish(Op.DONE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
