"""``Swarm``: a graph of tasks plus the initial globals, defined by subclassing."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .graph import SwarmGraph, Task
from .module import relative_to


class Swarm:
    """Subclass it: build tasks in ``__init__``, chain them in ``execute()``, set globals."""

    name: str = "Swarm"

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {}
        self.base_dir: Path | None = None  # set by load_swarm: relative module paths start here

    def set_global(self, tag: str, value: Any) -> None:
        """Set an initial global (any msgpack-able value; numpy arrays too)."""
        if not isinstance(tag, str) or not tag:
            raise ValueError("a global tag must be a non-empty string")
        self.globals[tag] = value

    def execute(self) -> Task | Sequence[Task]:
        """Return the last task(s) of one iteration; the graph is collected from them."""
        raise NotImplementedError("a Swarm subclass must define execute()")

    def graph(self) -> SwarmGraph:
        with relative_to(self.base_dir or Path.cwd()):
            return SwarmGraph(self.execute())


def _instantiate(module: object, module_name: str, path: Path, class_name: str | None) -> Swarm:
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Swarm) and obj is not Swarm and obj.__module__ == module_name
    ]
    if class_name:
        classes = [c for c in classes if c.__name__ == class_name]
    if len(classes) != 1:
        names = ", ".join(c.__name__ for c in classes) or "none"
        raise ValueError(f"{path} must define exactly one Swarm subclass (found: {names}); use --swarm NAME")
    return classes[0]()


def load_swarm(path: str | Path, class_name: str | None = None) -> Swarm:
    """Import a swarm file and instantiate its Swarm subclass (module paths are file-relative)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no swarm file at {path}")
    spec = importlib.util.spec_from_file_location(f"manta_swarm_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))  # like `python swarm.py`: sibling files import
    try:
        with relative_to(path.parent):
            spec.loader.exec_module(module)
            swarm = _instantiate(module, spec.name, path, class_name)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    swarm.base_dir = path.parent
    return swarm
