"""``Module``: a task's code (one .py file, or a package folder whose ``__init__`` has ``main()``)
and the dataset names it needs on a node.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.chunking import sha256

_base_dir: contextvars.ContextVar[Path | None] = contextvars.ContextVar("module_base_dir", default=None)
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def relative_to(directory: Path) -> Iterator[None]:
    """Resolve relative module paths against ``directory`` (the swarm file's folder)."""
    token = _base_dir.set(directory)
    try:
        yield
    finally:
        _base_dir.reset(token)


@dataclass
class Module:
    python_program: str | Path
    image: str | None = None  # accepted for Manta compatibility; nodes run tasks as processes
    name: str | None = None
    datasets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        path = Path(self.python_program).expanduser()
        if not path.is_absolute():
            path = (_base_dir.get() or Path.cwd()) / path
        self.path = path.resolve()
        if self.path.is_dir():
            if not (self.path / "__init__.py").is_file():
                raise ValueError(f"module folder {self.path} has no __init__.py exposing main()")
        elif not (self.path.is_file() and self.path.suffix == ".py"):
            raise FileNotFoundError(f"module {self.python_program!r}: no .py file or package folder at {self.path}")
        self.entry = self.path.stem if self.path.is_file() else self.path.name
        if not self.entry.isidentifier():
            raise ValueError(f"module name {self.entry!r} is not a valid Python identifier")
        if self.name is None:
            self.name = self.entry
        self.datasets = list(self.datasets or [])

    def bundle(self) -> bytes:
        """A deterministic zip of the code (same files, same bytes, same sha256)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            files = [self.path] if self.path.is_file() else sorted(self.path.rglob("*"))
            root = self.path.parent
            for file in files:
                relative = file.relative_to(root)
                if not file.is_file() or "__pycache__" in relative.parts or file.suffix in (".pyc", ".pyo"):
                    continue
                info = zipfile.ZipInfo(relative.as_posix(), _FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, file.read_bytes())
        return buffer.getvalue()

    def sha(self) -> str:
        return sha256(self.bundle())
