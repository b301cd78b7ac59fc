"""A Mosquitto process of our own on a free loopback port, from the project's config.

Used by the tests and the benchmarks: never the system broker, never port 1883. Restartable on
the same port, for failure tests.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .processes import stop_process

DEV_CONFIG = Path(__file__).resolve().parents[2] / "broker_config" / "mosquitto-dev.conf"


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def config_for_port(port: int, base: Path = DEV_CONFIG, extra: str = "") -> str:
    """``base`` with its ``listener 1883 127.0.0.1`` moved to ``port``."""
    text, count = re.subn(r"^listener 1883 127\.0\.0\.1$", f"listener {port} 127.0.0.1", base.read_text(), flags=re.M)
    if count != 1:
        raise ValueError(f"{base} must contain the line 'listener 1883 127.0.0.1'")
    if os.geteuid() == 0:
        text += "\nuser root\n"  # as root, mosquitto would otherwise switch to user 'mosquitto'
    return text + "\n" + extra


class MosquittoProcess:
    def __init__(self, workdir: Path, *, extra: str = "", binary: str | None = None) -> None:
        binary = binary or find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(config_for_port(self.port, extra=extra))
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
