"""``Local``: read-only access to the node's datasets, which never leave the node.

A dataset is a name in the node's config mapped to a file or a folder. Address a file inside a
folder dataset as ``"name/relative/path"``; paths that escape the dataset are refused.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .client import TaskClient, current


class Local:
    def __init__(self, client: TaskClient | None = None, datasets: dict[str, str] | None = None) -> None:
        if datasets is None:
            datasets = dict((client or current()).context.get("datasets", {}))
        self.datasets = {name: Path(path) for name, path in datasets.items()}

    def _resolve(self, name: str) -> Path:
        name = str(name)
        if name in self.datasets:
            return self.datasets[name]
        head, _, rest = name.partition("/")
        root = self.datasets.get(head)
        if root is None:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise FileNotFoundError(f"no dataset {name!r} on this node (known: {known})")
        root = root.resolve()
        target = (root / rest).resolve()
        if not target.is_relative_to(root):
            raise PermissionError(f"{name!r} points outside dataset {head!r}")
        return target

    def get_binary_data(self, dataset_name: str) -> io.BytesIO:
        """The whole file as a ``BytesIO`` positioned at 0."""
        path = self._resolve(dataset_name)
        if path.is_dir():
            raise IsADirectoryError(f"{dataset_name!r} is a folder: name a file inside it")
        return io.BytesIO(path.read_bytes())

    def get_numpy_data(self, dataset_name: str) -> Any:
        """``np.load`` of the file (an array, or an ``NpzFile`` for .npz); pickles are refused."""
        return np.load(self.get_binary_data(dataset_name), allow_pickle=False)

    def list_dir(self, directory: str) -> list[str]:
        """Entries of a folder dataset (or a folder inside one), as ``"name/relative/path"``."""
        path = self._resolve(directory)
        prefix = directory.rstrip("/")
        return sorted(f"{prefix}/{child.name}" for child in path.iterdir())

    def exists(self, file_name: str) -> bool:
        try:
            return self._resolve(file_name).exists()
        except (FileNotFoundError, PermissionError):
            return False

    def read_file_lines(
        self,
        file_name: str,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> io.StringIO:
        text = self._resolve(file_name).read_bytes().decode(encoding or "utf-8", errors or "strict")
        return io.StringIO(text, newline=newline)
