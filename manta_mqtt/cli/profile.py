"""A site profile: where the broker is and who we are to it, so an operator types no flags.

Looked for, first found wins: ``--profile FILE`` (or ``MANTA_MQTT_PROFILE``), ``./manta.toml``,
then ``$XDG_CONFIG_HOME/manta-mqtt/profile.toml`` (``~/.config/...``). Relative paths in it
start at the file. A command-line option or environment variable always wins over the profile.

```toml
[broker]
url = "mqtts://broker.local:8884"
tls_ca = "manta-site/monitor/ca.crt"
tls_cert = "manta-site/monitor/monitor.crt"
tls_key = "manta-site/monitor/monitor.key"
username = "monitor"              # or a user and a password file instead of a certificate
password_file = "monitor.password"
version = "auto"                  # "5", "3.1.1" or "auto"
```
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..transport.mqtt import VERSIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCAL_NAME = "manta.toml"
_PATHS = ("password_file", "tls_ca", "tls_cert", "tls_key")
_TEXTS = ("url", "username", "version")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Profile:
    path: Path
    url: str | None = None
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    version: str | None = None


def user_profile(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "manta-mqtt" / "profile.toml"


def find(explicit: Path | None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Profile | None:
    """The profile in force, or None. An explicit one that does not exist is an error."""
    if explicit is None and environ.get("MANTA_MQTT_PROFILE"):
        explicit = Path(environ["MANTA_MQTT_PROFILE"])
    if explicit is not None:
        if not explicit.is_file():
            raise ProfileError(f"{explicit}: no such profile")
        return load(explicit)
    for candidate in ((cwd or Path.cwd()) / LOCAL_NAME, user_profile(environ)):
        if candidate.is_file():
            return load(candidate)
    return None


def _unknown(where: str, key: str, known: list[str]) -> ProfileError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ProfileError(f"{where}: unknown key {key!r}{hint}")


def load(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc
    for section in data:
        if section != "broker":
            raise _unknown(str(path), section, ["broker"])
    broker: Any = data.get("broker", {})
    if not isinstance(broker, dict):
        raise ProfileError(f"{path}: [broker] must be a table")
    values: dict[str, Any] = {}
    for key, value in broker.items():
        if key not in _PATHS + _TEXTS:
            raise _unknown(f"{path} [broker]", key, list(_TEXTS + _PATHS))
        if not isinstance(value, str) or not value:
            raise ProfileError(f"{path} [broker] {key}: expected a non-empty string")
        values[key] = (path.parent / Path(value).expanduser()) if key in _PATHS else value
    if values.get("version") not in (None, *VERSIONS, "auto"):
        raise ProfileError(f"{path} [broker] version: {values['version']!r} is not auto, 5 or 3.1.1")
    return Profile(path, **values)
