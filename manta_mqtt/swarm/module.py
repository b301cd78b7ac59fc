"""``Module``: a task's code (one .py file, or a package folder whose ``__init__`` has ``main()``)
and the dataset names it needs on a node.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.chunking import sha256

_base_dir: contextvars.ContextVar[Path | None] = contextvars.ContextVar("module_base_dir", default=None)
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
log = logging.getLogger("manta_mqtt.swarm")


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
        """A deterministic zip of the code (same files, same bytes, same sha256).

        The bundle is published to every node, so it holds only the module's own regular files:
        no dotfiles or dot-folders (``.git``, ``.env``, ``.venv``), no compiled Python, and no
        symlink, which could point anywhere on this machine.
        """
        buffer = io.BytesIO()
        files, skipped = self.files()
        if skipped:
            log.info("module %s: left out of its bundle: %s", self.name, ", ".join(skipped))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                info = zipfile.ZipInfo(file.relative_to(self.path.parent).as_posix(), _FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, _read_no_follow(file))
        return buffer.getvalue()

    def files(self) -> tuple[list[Path], list[str]]:
        """The files :meth:`bundle` packs, sorted, and what it leaves out (dotfiles and symlinks)."""
        if self.path.is_file():
            return [self.path], []
        files: list[Path] = []
        skipped: list[str] = []
        for folder, dirs, names in os.walk(self.path):  # never descends into a symlinked folder
            here = Path(folder)
            for name in list(dirs):
                if name == "__pycache__" or name.startswith(".") or (here / name).is_symlink():
                    dirs.remove(name)
                    if name != "__pycache__":
                        skipped.append(_shown(here / name, self.path, folder=True))
            for name in names:
                file = here / name
                if name.endswith((".pyc", ".pyo")):
                    continue
                if name.startswith(".") or file.is_symlink():
                    skipped.append(_shown(file, self.path))
                elif file.is_file():  # not a socket or a FIFO
                    files.append(file)
        return sorted(files), sorted(skipped)

    def sha(self) -> str:
        return sha256(self.bundle())


def _shown(path: Path, root: Path, *, folder: bool = False) -> str:
    """How a skipped path is named in the log: relative to the module folder, symlinks marked."""
    relative = path.relative_to(root).as_posix() + ("/" if folder else "")
    return f"{relative} (symlink)" if path.is_symlink() else relative


def _read_no_follow(path: Path) -> bytes:
    """The file's bytes; a file swapped for a symlink since it was listed is refused, not followed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
