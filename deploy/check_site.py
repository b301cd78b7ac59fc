"""What ``make pi-check`` and ``make systemd-check`` share: a Debian root made once with
debootstrap, the project's wheel, the unit's ExecStart, a site broker on this host (TLS, the
site's rendered ``conf.d/manta.conf``, free loopback ports) with one node's kit, and the small
numpy swarm (tests/swarms/counter) run with the site's coordinator kit.

Both scripts run as ``python deploy/<script>.py``: this folder is on ``sys.path``, and this module
puts the checkout first so that they use its ``manta_mqtt``, whatever the venv installed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions  # noqa: E402
from manta_mqtt.coordinator.options import RunSummary  # noqa: E402
from manta_mqtt.coordinator.progress import ConsoleProgress  # noqa: E402
from manta_mqtt.coordinator.store import RunStore  # noqa: E402
from manta_mqtt.swarm import load_swarm  # noqa: E402
from manta_mqtt.tools.mosquitto import find_mosquitto, site_broker  # noqa: E402
from manta_mqtt.tools.site import INSTALL, Site  # noqa: E402
from manta_mqtt.transport.mqtt import BrokerAddress  # noqa: E402
from manta_mqtt.transport.tls import TlsFiles  # noqa: E402

UNIT = ROOT / "deploy" / "systemd" / "manta-edge-node.service"
SWARM = ROOT / "tests" / "swarms" / "counter" / "swarm.py"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class Missing(Exception):
    """Something this machine lacks; the message says what, in one line."""


def need_mosquitto() -> None:
    if find_mosquitto() is None:
        raise Missing("mosquitto is not installed on this host (make mosquitto)")


def debootstrap_root(cache: Path, arch: str, packages: str, mirror: str, say: Callable[[str], None]) -> Path:
    """The cached bookworm root for ``arch`` with ``packages``, made once (``cache/bookworm-ARCH``)."""
    base = cache / f"bookworm-{arch}"
    if (base / "usr" / "bin" / "python3").exists():
        return base
    partial = cache / f"bookworm-{arch}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    say(f"debootstrap bookworm {arch} into {base} (once, a few minutes)")
    command = ["debootstrap", f"--arch={arch}", "--variant=minbase", f"--include={packages}", "bookworm", str(partial)]
    started = time.monotonic()
    if subprocess.run([*command, mirror], stdout=subprocess.DEVNULL).returncode != 0:
        raise Missing(f"debootstrap failed (is {mirror} reachable?); see {partial}/debootstrap/debootstrap.log")
    partial.rename(base)
    say(f"debootstrap took {time.monotonic() - started:.0f} s")
    return base


def fresh_copy(base: Path, work: Path) -> Path:
    """A copy of ``base`` at ``work`` (replacing one left by an earlier run), with this host's
    resolv.conf (pip reaches PyPI) and CA bundle as /etc/ssl/host-ca.crt (a TLS proxy's CA, if any)."""
    if work.exists():
        shutil.rmtree(work)
    subprocess.run(["cp", "-a", str(base), str(work)], check=True)
    resolv = work / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)  # systemd's package may have left a symlink to /run
    shutil.copy("/etc/resolv.conf", resolv)
    if HOST_CA.exists():
        shutil.copy(HOST_CA, work / "etc" / "ssl" / "host-ca.crt")
    return work


def pip_env() -> list[str]:
    """``env PIP_CERT=...`` to prefix install-node.sh with, when the host's CA bundle was copied."""
    return ["env", "PIP_CERT=/etc/ssl/host-ca.crt"] if HOST_CA.exists() else []


def build_wheel(into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into), str(ROOT)]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{built.stdout}{built.stderr}")
    return next(into.glob("manta_mqtt-*.whl"))


def exec_start() -> list[str]:
    """The unit's ExecStart, as systemd would run it."""
    match = re.search(r"^ExecStart=(.+)$", UNIT.read_text(), re.M)
    assert match is not None, f"{UNIT} has no ExecStart"
    return shlex.split(match.group(1))


def stage_install(inside: Path, site: Site, node: str) -> Path:
    """Put the wheel, deploy/ and the node's kit at /wheels, /deploy and /kit/NODE of a root;
    returns the wheel (install it with ``sh /deploy/install-node.sh /kit/NODE /wheels/NAME``)."""
    wheel = build_wheel(inside / "wheels")
    shutil.copytree(ROOT / "deploy", inside / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(site.kit(node), inside / "kit" / node)
    return wheel


def add_dataset(inside: Path) -> None:
    """The counter swarm's numbers.npy in /srv/manta-data, named in the installed node.toml."""
    data = inside / "srv" / "manta-data"
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "numbers.npy", np.arange(10))
    with (inside / "etc" / "manta" / "node.toml").open("a") as config:  # [datasets] is its last table
        config.write('"numbers.npy" = "/srv/manta-data/numbers.npy"\n')


@dataclass
class SiteUnderTest:
    """A fresh site whose broker runs on this host, with the kit of one node that connects to it."""

    site: Site
    ports: dict[int, int]  # the site config's ports (8883 nodes, 8884 coordinator) -> where they listen
    work: Path

    def coordinate(self, **swarm_globals: object) -> RunSummary:
        """The counter swarm (with ``swarm_globals`` changed) through the site's coordinator kit."""
        return self.coordinator(**swarm_globals).run()

    def coordinator(self, **swarm_globals: object) -> Coordinator:
        """The coordinator ``coordinate`` runs, not started (to run it in a thread and interrupt it)."""
        kit = self.site.root / "coordinator"
        files = TlsFiles(kit / "ca.crt", kit / "coordinator.crt", kit / "coordinator.key")
        address = BrokerAddress.parse(f"mqtts://127.0.0.1:{self.ports[8884]}").with_tls(files)
        options = CoordinatorOptions(runs_dir=self.work / "runs", min_nodes=1, wait_nodes=300, mqtt_version="5",
                                     signing_key=self.site.root / "owner.key")  # fmt: skip
        swarm = load_swarm(SWARM)
        swarm.globals.update(swarm_globals)
        return Coordinator(swarm, address, options, ConsoleProgress())


def worker_times(summary: RunSummary, node: str) -> list[float]:
    """The node's worker task durations in a finished run; RuntimeError if it did not finish there."""
    store = RunStore.open(summary.store_path)
    durations = [float(r["duration"]) for r in store.runs() if r["task"] == "worker" and r["node"] == node]
    if summary.state != "stopped" or not durations:
        raise RuntimeError(f"the swarm did not finish on the node: {summary.state} {summary.reason}")
    return durations


@contextmanager
def running_site(work: Path, node: str) -> Iterator[SiteUnderTest]:
    """A new site in ``work``, its broker started on free loopback ports, ``node``'s kit added."""
    need_mosquitto()
    site = Site.init(work / "site", ["127.0.0.1"])[0]
    etc = work / "etc-mosquitto"
    for folder in ("ca", "certs", "conf.d"):
        (etc / folder).mkdir(parents=True)
    broker, ports = site_broker(work / "broker", etc, snippet=(site.bundle / "conf.d/manta.conf").read_text())
    site.add_node(node, url=f"mqtts://127.0.0.1:{ports[8883]}")
    for name in INSTALL:  # conf.d/manta.conf: site_broker wrote it, on its ports
        if name != "conf.d/manta.conf":
            shutil.copy(site.bundle / name, etc / name)
    broker.start()
    try:
        yield SiteUnderTest(site, ports, work)
    finally:
        broker.stop()
