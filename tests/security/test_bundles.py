"""Code bundles are published to every node: only the module's own regular files go in."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path

import pytest

from manta_mqtt.swarm.module import Module, _read_no_follow

pytestmark = pytest.mark.timeout(60)  # a FIFO read by mistake would block forever

CLEAN = ["pkg/__init__.py", "pkg/helper.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"]


def write(path: Path, text: str = "X = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def package(root: Path) -> Path:
    folder = root / "pkg"
    write(folder / "__init__.py", "from .helper import VALUE\n\ndef main():\n    return VALUE\n")
    write(folder / "helper.py", "VALUE = 42\n")
    write(folder / "sub" / "__init__.py", "")
    write(folder / "sub" / "deep.py", "DEEP = True\n")
    return folder


def names(module: Module) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(module.bundle())).namelist()


def dirty(tmp_path: Path) -> Path:
    """A package full of what must not leave this machine."""
    folder = package(tmp_path / "src")
    secret = write(tmp_path / "outside" / "id_rsa", "PRIVATE KEY\n")
    write(folder / ".git" / "config", "[remote]\n")
    write(folder / ".env", "TOKEN=secret\n")
    write(folder / ".venv" / "lib" / "site.py")
    write(folder / "sub" / ".DS_Store")
    write(folder / "sub" / ".hidden.py")
    write(folder / "__pycache__" / "helper.cpython-311.pyc")
    (folder / "key.py").symlink_to(secret)  # a file outside, under an innocent name
    (folder / "linked").symlink_to(secret.parent, target_is_directory=True)  # a folder outside
    (folder / "sub" / "alias.py").symlink_to(folder / "helper.py")  # even one pointing inside
    (folder / "dangling.py").symlink_to(tmp_path / "nowhere")
    os.mkfifo(folder / "pipe")  # reading it would block the coordinator forever
    return folder


def test_dotfiles_and_symlinks_stay_out(tmp_path: Path) -> None:
    assert names(Module(dirty(tmp_path))) == CLEAN


def test_what_was_left_out_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module = Module(dirty(tmp_path))
    with caplog.at_level(logging.INFO, logger="manta_mqtt.swarm"):
        module.bundle()
    [record] = [r for r in caplog.records if "left out" in r.getMessage()]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    for shown in (".git/", ".env", ".venv/", "sub/.DS_Store", "sub/.hidden.py", "key.py (symlink)"):
        assert shown in message
    assert "linked/ (symlink)" in message and "sub/alias.py (symlink)" in message
    assert "__pycache__" not in message  # always there after a run: not worth a line
    assert module.files()[1] == sorted(module.files()[1])


def test_a_clean_package_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="manta_mqtt.swarm"):
        Module(package(tmp_path)).bundle()
    assert not caplog.records


def test_the_bundle_is_the_same_bytes_with_or_without_what_is_left_out(tmp_path: Path) -> None:
    """Deterministic: the skipped files change nothing, so nodes keep their cached code."""
    clean = Module(package(tmp_path / "a"))
    messy = Module(dirty(tmp_path / "b"))
    assert messy.bundle() == messy.bundle() == clean.bundle()


def test_a_module_folder_reached_through_a_symlink_is_bundled(tmp_path: Path) -> None:
    """The folder the user named is resolved once; only links inside it are refused."""
    folder = package(tmp_path / "real")
    (tmp_path / "pkg").symlink_to(folder, target_is_directory=True)
    assert names(Module(tmp_path / "pkg")) == CLEAN


def test_a_file_swapped_for_a_symlink_after_listing_is_not_followed(tmp_path: Path) -> None:
    target = write(tmp_path / "secret.txt", "secret\n")
    link = tmp_path / "worker.py"
    link.symlink_to(target)
    with pytest.raises(OSError):
        _read_no_follow(link)
    assert _read_no_follow(target) == b"secret\n"
