"""The site broker's files, installed as broker_config/README.md says on Debian's stock Mosquitto.

The main config is a copy of bookworm's /etc/mosquitto/mosquitto.conf (fixtures/, taken from the
mosquitto 2.0.11 package); the site's snippet goes to its conf.d/, the other files where the
printed `sudo install` lines put them, with their modes and group. Only the listeners move (to
free loopback ports) and the paths (to a scratch root). Run as root, Mosquitto drops to the
`mosquitto` user as it does under systemd, so the files' modes are checked too. It must start,
log neither an error nor a warning, let a node in with its certificate, and answer the README's
`$SYS` check to the monitor. Never the system broker, never port 1883 or 8883.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from manta_mqtt.tools.mosquitto import DEBIAN_MAIN_CONFIG, SITE_ACL, SITE_CONFIG, MosquittoProcess, free_port, node_acl
from manta_mqtt.tools.site import INSTALL, Site
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from manta_mqtt.transport.tls import TlsFiles

from ..conftest import mosquitto_binary

STOCK_MAIN = Path(__file__).parent / "fixtures" / "debian-bookworm-mosquitto.conf"
NODES = ["pi-garage", "pi-kitchen"]
#: Debian's folders, owned by the mosquitto user (the package and its systemd unit make them).
STATE_DIRS = ("/run/mosquitto", "/var/lib/mosquitto", "/var/log/mosquitto")
DROPPED = "$SYS/broker/publish/messages/dropped"  # broker_config/README.md, Watching


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_stock_main_config_is_the_one_the_site_tests_load() -> None:
    """tests/security's site brokers load DEBIAN_MAIN_CONFIG: it must be the packaged file."""
    assert settings(STOCK_MAIN.read_text()) == settings(DEBIAN_MAIN_CONFIG)


@dataclass
class Installed:
    root: Path  # stands for /
    site: Path  # the site folder that rendered the files
    server: MosquittoProcess
    ports: dict[int, int]  # shipped port -> test port

    def log(self) -> str:
        main = self.root / "var/log/mosquitto/mosquitto.log"
        return self.server.log.read_text(errors="replace") + (main.read_text(errors="replace") if main.exists() else "")

    def link(self, shipped_port: int, kit: Path, name: str) -> MqttLink:
        files = TlsFiles(kit / "ca.crt", kit / f"{name}.crt", kit / f"{name}.key")
        address = BrokerAddress.parse(f"mqtts://localhost:{self.ports[shipped_port]}").with_tls(files)
        return MqttLink(f"{name}-probe", address, version="5", session_expiry=0)


def as_root() -> bool:
    return os.geteuid() == 0


def install(root: Path, source: Path, name: str, mode: int, group: bool) -> None:
    """``install -m MODE [-g mosquitto] source DEST``, with DEST under ``root``."""
    dest = root / INSTALL[name][1].lstrip("/") / Path(name).name
    shutil.copy(source, dest)
    os.chmod(dest, mode)
    if group and as_root():
        os.chown(dest, 0, grp.getgrnam("mosquitto").gr_gid)


def rendered_site(root: Path, site_dir: Path) -> str:
    """``manta-mqtt site init`` and ``add-node``, their bundle installed as printed; the snippet."""
    site, _ = Site.init(site_dir, ["localhost"])
    for node in NODES:
        site.add_node(node)
    for name, (flags, _) in INSTALL.items():
        install(root, site.bundle / name, name, int(flags.split()[1], 8), "-g mosquitto" in flags)
    return (site.bundle / "conf.d" / "manta.conf").read_text()


def by_hand_site(root: Path, site_dir: Path) -> str:
    """The README's appendix: the shipped mosquitto-pi.conf and manta.acl plus a printf block per node
    (the certificates from a site folder: the appendix's openssl lines make the same files)."""
    rendered_site(root, site_dir)
    etc = root / "etc/mosquitto"
    (etc / "manta.acl").write_text(SITE_ACL.read_text() + node_acl(NODES))
    (etc / "ca" / "crl.pem").unlink()
    return SITE_CONFIG.read_text()


@pytest.fixture(params=[rendered_site, by_hand_site], ids=["rendered", "by-hand"])
def installed(request: pytest.FixtureRequest) -> Iterator[Installed]:
    binary = mosquitto_binary()
    if as_root():
        try:
            pwd.getpwnam("mosquitto")
        except KeyError:
            pytest.skip("run as root without a mosquitto user: Mosquitto would not drop privileges as on Debian")
    root = Path(tempfile.mkdtemp(prefix="manta-deploy-"))  # not under pytest's 0700 folders
    try:
        os.chmod(root, 0o755)
        yield start(root, binary, request.param)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start(root: Path, binary: str, make: Callable[[Path, Path], str]) -> Installed:
    etc = root / "etc/mosquitto"
    for folder in ("conf.d", "ca", "certs"):  # conf.d: the package's; ca and certs as the README makes them
        (etc / folder).mkdir(parents=True, mode=0o755)
    for folder in STATE_DIRS:
        (root / folder.lstrip("/")).mkdir(parents=True)
    if as_root():
        mosquitto = pwd.getpwnam("mosquitto")
        for folder in ("ca", "certs"):
            os.chmod(etc / folder, 0o750)
            os.chown(etc / folder, 0, mosquitto.pw_gid)
        for folder in STATE_DIRS:
            os.chown(root / folder.lstrip("/"), mosquitto.pw_uid, mosquitto.pw_gid)
    snippet = make(root, root / "manta-site")
    ports: dict[int, int] = {}

    def listener(match: re.Match[str]) -> str:
        ports[int(match.group(1))] = free_port()
        return f"listener {ports[int(match.group(1))]} 127.0.0.1"

    snippet = re.sub(r"^listener (\d+) \S+$", listener, snippet, flags=re.M)
    assert sorted(ports) == [1883, 8883, 8884]
    (etc / "conf.d" / "manta.conf").write_text(snippet.replace("/etc/mosquitto/", f"{etc}/"))
    main = STOCK_MAIN.read_text()
    for folder in ("/etc/mosquitto", *STATE_DIRS):
        main = main.replace(f" {folder}", f" {root}{folder}")
    server = MosquittoProcess(root / "console", binary=binary, config=main, ports=ports.values())
    return Installed(root, root / "manta-site", server.start(), ports)


def receive(link: MqttLink, topic: str) -> list[bytes]:
    """The retained value(s) of ``topic`` the broker lets ``link`` read (none: an ACL refusal)."""
    got: list[bytes] = []
    link.route(topic, lambda t, payload, r: got.append(payload))
    assert link.start(timeout=5), link.failure_line
    try:
        assert link.subscribe(topic, wait=5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        link.stop()
    return got


def test_the_site_broker_starts_cleanly_under_debians_main_config(installed: Installed) -> None:
    server = installed.server
    try:
        for node in NODES:  # each node with its kit, on the fleet port
            link = installed.link(8883, installed.site / "nodes" / node, node)
            assert link.start(timeout=5), link.failure_line
            link.stop()
        assert receive(installed.link(8884, installed.site / "monitor", "monitor"), DROPPED) == [b"0"]
        password = (installed.site / "monitor" / "local.password").read_text().strip()  # on the broker itself
        local = BrokerAddress.parse(f"mqtt://127.0.0.1:{installed.ports[1883]}").with_credentials("monitor", password)
        assert receive(MqttLink("monitor-local", local, version="5", session_expiry=0), DROPPED) == [b"0"]
    finally:
        server.stop()
    log = installed.log()
    assert all(f"u'{node}')" in log for node in NODES), log
    assert "Error" not in log and "Warning" not in log, log
    assert (installed.root / "var/lib/mosquitto/mosquitto.db").exists()  # Debian's persistence_location
    if as_root():
        assert (installed.root / "var/lib/mosquitto/mosquitto.db").stat().st_uid == pwd.getpwnam("mosquitto").pw_uid


def test_a_second_persistence_location_would_stop_it(tmp_path: Path) -> None:
    """Why the snippet must not set what Debian's main file sets: the test above would catch it."""
    binary = mosquitto_binary()
    port = free_port()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "manta.conf").write_text(f"listener {port} 127.0.0.1\npersistence_location {tmp_path}/\n")
    main = f"persistence true\npersistence_location {tmp_path}/\ninclude_dir {tmp_path}/conf.d\n"
    server = MosquittoProcess(tmp_path / "console", binary=binary, config=main, ports=[port])
    with pytest.raises(RuntimeError, match="Duplicate persistence_location"):
        server.start()
