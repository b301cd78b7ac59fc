"""Broker passwords read from files, so they never appear on a command line (``ps`` shows those).

Both ``manta-mqtt`` (``--password-file``, ``MANTA_MQTT_PASSWORD_FILE``) and the edge agent
(``password_file`` in node.toml) read them here: a missing or unreadable file is an error that
names it, and a file other users can read gets a warning with the ``chmod`` that fixes it.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("manta_mqtt.credentials")

#: Why a password on the command line (an option or inside a URL) is a bad idea, and what to do.
VISIBLE_IN_PS = "visible in ps; use --password-file or MANTA_MQTT_PASSWORD"
#: More than any real password: a wrong path (a model file, say) is not read whole.
MAX_PASSWORD_FILE_BYTES = 64 * 1024


class PasswordFileError(ValueError):
    """A password file that cannot be used; the message names it."""


def read_password_file(path: str | Path, warn: Callable[[str], None] = log.warning) -> str:
    """The password in ``path`` (surrounding whitespace and the final newline stripped).

    A pipe works too (``--password-file <(pass show broker)``); only a regular file's mode is
    checked, and ``warn`` is called when group or others may read it.
    """
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise PasswordFileError(f"password file {path} does not exist") from None
    except OSError as exc:
        raise PasswordFileError(f"password file {path} cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PasswordFileError(f"password file {path} is a directory")
        if stat.S_ISREG(mode) and mode & 0o044:
            warn(shared_warning(path, mode))
        with os.fdopen(fd, "rb", closefd=False) as handle:  # closed below, whatever happens
            data = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise PasswordFileError(f"password file {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise PasswordFileError(f"password file {path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        password = data.decode().strip()
    except UnicodeDecodeError:
        raise PasswordFileError(f"password file {path} is not UTF-8 text") from None
    if not password:
        raise PasswordFileError(f"password file {path} is empty")
    return password


def shared_warning(path: Path, mode: int) -> str:
    """What to tell the owner of a secret file that group or others can read."""
    who = " and ".join(w for w, bit in (("group", 0o040), ("others", 0o004)) if mode & bit)
    quoted = shlex.quote(str(path))
    return f"{path} holds a password but is readable by {who} (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {quoted}"
