"""A Mosquitto process of our own on a free loopback port, from the project's config.

Used by the tests and the benchmarks: never the system broker, never port 1883. Restartable on
the same port, for failure tests. :func:`site_broker` runs the site config
(``mosquitto-pi.conf``) the way Debian loads it, as a conf.d snippet of the stock main config,
so the tests check the file a site installs rather than a copy of it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .processes import kill_process, stop_process

CONFIG_DIR = Path(__file__).resolve().parents[2] / "broker_config"
DEV_CONFIG = CONFIG_DIR / "mosquitto-dev.conf"
SITE_CONFIG = CONFIG_DIR / "mosquitto-pi.conf"
SITE_ACL = CONFIG_DIR / "manta.acl"
#: Debian's /etc/mosquitto/mosquitto.conf (mosquitto 2.0.11), which includes the site config from conf.d.
DEBIAN_MAIN_CONFIG = """\
pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until something listens on ``port``; a ``process`` that exits meanwhile will not listen: RuntimeError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited ({process.returncode}) instead of listening on {port}")
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
    return text + _root_user() + "\n" + extra


def node_acl(node_ids: Iterable[str]) -> str:
    """The ACL blocks that enrol nodes (appended to manta.acl): the swarms' shared data they read."""
    return "".join(
        f"\nuser {node}\ntopic read manta/v2/swarms/+/state\ntopic read manta/v2/swarms/+/blobs/#"
        "\ntopic read manta/v2/discover\n"
        for node in node_ids
    )


def _root_user() -> str:
    # as root, mosquitto would otherwise switch to user 'mosquitto', who cannot read a test's files
    return "\nuser root\n" if os.geteuid() == 0 else ""


class MosquittoProcess:
    def __init__(
        self,
        workdir: Path,
        *,
        extra: str = "",
        binary: str | None = None,
        config: str | None = None,
        ports: Iterable[int] = (),
    ) -> None:
        """The dev config on a free port plus ``extra``; or ``config`` as it is, listening on ``ports``."""
        binary = binary or find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.ports = list(ports) or [free_port()]
        self.port = self.ports[0]
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(config_for_port(self.port, extra=extra) if config is None else config)
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            for port in self.ports:
                wait_for_port(port, process=self.proc)
        except RuntimeError as exc:  # say why: a config error, most likely
            raise RuntimeError(f"mosquitto -c {self.conf}: {exc}:\n{self.log.read_text(errors='replace')}") from None
        return self

    def reload(self) -> None:
        """SIGHUP, as ``systemctl reload mosquitto`` sends.

        Mosquitto reloads between passes of its event loop, shortly after, and logs it only at the
        information level, which the site config does not log: a test waits for the reload's
        effect, not for this call."""
        if self.proc is None:
            raise RuntimeError("mosquitto is not running")
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, for failover tests (:meth:`start` brings it back on the same ports)."""
        if self.proc is not None:
            kill_process(self.proc)
            self.proc = None

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def site_broker(
    workdir: Path, etc: Path, *, binary: str | None = None, snippet: str | None = None
) -> tuple[MosquittoProcess, dict[int, int]]:
    """The site config, installed as Debian would: ``etc/conf.d/manta.conf`` of the stock main config.

    ``etc`` stands for /etc/mosquitto/ and must hold what broker_config/README.md puts there
    (``ca/``, ``certs/``, ``manta.passwd``, ``manta.acl``). ``snippet``: the conf.d file to run
    instead of the shipped mosquitto-pi.conf (a site bundle's ``conf.d/manta.conf``). Changed, and
    only that: every listener moves to a free port on 127.0.0.1, /etc/mosquitto/ to ``etc``, and
    the stock file's /run and /var paths to ``workdir``. Returns the process (not started) and
    {shipped port: port used}.
    """
    ports: dict[int, int] = {}

    def listener(match: re.Match[str]) -> str:
        ports[int(match.group(1))] = free_port()
        return f"listener {ports[int(match.group(1))]} 127.0.0.1"

    text = SITE_CONFIG.read_text() if snippet is None else snippet
    adapted = re.sub(r"^listener (\d+) \S+$", listener, text, flags=re.M)
    (etc / "conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "conf.d" / "manta.conf").write_text(adapted.replace("/etc/mosquitto/", f"{etc}/"))
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    main = (
        DEBIAN_MAIN_CONFIG.replace("/run/mosquitto/", f"{workdir}/")
        .replace("/var/lib/mosquitto/", f"{workdir}/data/")
        .replace("/var/log/mosquitto/", f"{workdir}/")
        .replace("/etc/mosquitto/", f"{etc}/")
    )
    process = MosquittoProcess(workdir, binary=binary, config=_root_user() + main, ports=ports.values())
    return process, ports
