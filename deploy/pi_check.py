"""``make pi-check``: an edge node on Debian bookworm arm64 (a Pi's OS), emulated, in a real swarm.

Builds once, and caches, a bookworm arm64 root with debootstrap; runs it under qemu-user through
binfmt_misc; installs the project's wheel there with deploy/install-node.sh (the steps of
docs/deploy.md; pip fetches the dependencies from PyPI); starts the agent as the unit's user
with the unit's ExecStart, against a site broker on this host (TLS, the site's kit); runs the
small numpy swarm (tests/swarms/counter) on it; prints the agent's idle RSS and the tasks' times.
Under qemu-user the RSS is the emulator's process: an upper bound, not a Pi's figure, and the
times are emulation times. Needs root, debootstrap, qemu-user-static, binfmt-support and
Mosquitto; anything missing stops it with one line saying what.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's manta_mqtt, whatever the venv installed

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions  # noqa: E402
from manta_mqtt.coordinator.options import RunSummary  # noqa: E402
from manta_mqtt.coordinator.progress import ConsoleProgress  # noqa: E402
from manta_mqtt.coordinator.store import RunStore  # noqa: E402
from manta_mqtt.swarm import load_swarm  # noqa: E402
from manta_mqtt.tools.mosquitto import find_mosquitto, site_broker  # noqa: E402
from manta_mqtt.tools.processes import stop_process  # noqa: E402
from manta_mqtt.tools.site import INSTALL, Site  # noqa: E402
from manta_mqtt.transport.mqtt import BrokerAddress  # noqa: E402
from manta_mqtt.transport.tls import TlsFiles  # noqa: E402

CACHE = Path(os.environ.get("PI_CHECK_CACHE", Path.home() / ".cache" / "manta-pi-check"))
MIRROR = os.environ.get("PI_CHECK_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "python3,python3-venv,ca-certificates,systemd,procps"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
UNIT = ROOT / "deploy" / "systemd" / "manta-edge-node.service"
SWARM = ROOT / "tests" / "swarms" / "counter" / "swarm.py"
NODE = "pi-check"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class Missing(Exception):
    """Something this machine lacks; the message says what, in one line."""


def say(text: str) -> None:
    print(f"pi-check: {text}", flush=True)


def prerequisites() -> None:
    if os.geteuid() != 0:
        raise Missing("must run as root (debootstrap, chroot, mounts)")
    for tool in ("debootstrap", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise Missing(f"{tool} is not installed (apt-get install debootstrap qemu-user-static binfmt-support)")
    if find_mosquitto() is None:
        raise Missing("mosquitto is not installed on this host (make mosquitto)")
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
    if not (BINFMT / "status").exists():
        raise Missing(f"binfmt_misc is not mounted at {BINFMT} and cannot be (a container without it?)")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Missing("no binfmt_misc entry for arm64 (apt-get install qemu-user-static binfmt-support)")


def base_root() -> Path:
    """The cached bookworm arm64 root, made once."""
    base = CACHE / "bookworm-arm64"
    if (base / "usr" / "bin" / "python3").exists():
        return base
    partial = CACHE / "bookworm-arm64.partial"
    shutil.rmtree(partial, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    say(f"debootstrap bookworm arm64 into {base} (once, a few minutes)")
    command = [
        "debootstrap",
        "--arch=arm64",
        "--variant=minbase",
        f"--include={PACKAGES}",
        "bookworm",
        str(partial),
        MIRROR,
    ]
    if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
        raise Missing(f"debootstrap failed (is {MIRROR} reachable?); see {partial}/debootstrap/debootstrap.log")
    partial.rename(base)
    return base


class Chroot:
    """A copy of the base root with /proc and /dev mounted; ``run`` runs a command in it."""

    def __init__(self, base: Path) -> None:
        self.path = CACHE / "work"
        self.mounts: list[Path] = []
        if self.path.exists():
            shutil.rmtree(self.path)
        subprocess.run(["cp", "-a", str(base), str(self.path)], check=True)
        shutil.copy("/etc/resolv.conf", self.path / "etc" / "resolv.conf")  # pip reaches PyPI
        if HOST_CA.exists():  # with this host's CAs: a network's TLS proxy, if it has one
            shutil.copy(HOST_CA, self.path / "etc" / "ssl" / "host-ca.crt")
        for source, flags in (("/proc", ["-t", "proc", "proc"]), ("/dev", ["--bind", "/dev"])):
            target = self.path / source.lstrip("/")
            subprocess.run(["mount", *flags, str(target)], check=True)
            self.mounts.append(target)

    def run(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["chroot", str(self.path), *command], env=CLEAN_ENV, **kwargs)  # type: ignore[call-overload, no-any-return]

    def close(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


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


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_for(text: str, log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the node never logged {text!r}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def check(work: Path) -> None:
    prerequisites()
    chroot = Chroot(base_root())
    try:
        site = Site.init(work / "site", ["127.0.0.1"])[0]
        etc = work / "etc-mosquitto"
        for folder in ("ca", "certs", "conf.d"):
            (etc / folder).mkdir(parents=True)
        broker, ports = site_broker(work / "broker", etc, snippet=(site.bundle / "conf.d/manta.conf").read_text())
        site.add_node(NODE, url=f"mqtts://127.0.0.1:{ports[8883]}")
        for name in INSTALL:  # conf.d/manta.conf: site_broker wrote it, on its ports
            if name != "conf.d/manta.conf":
                shutil.copy(site.bundle / name, etc / name)
        broker.start()
        try:
            run_node(chroot, site, ports, work)
        finally:
            broker.stop()
    finally:
        chroot.close()


def run_node(chroot: Chroot, site: Site, ports: dict[int, int], work: Path) -> None:
    inside = chroot.path
    wheel = build_wheel(inside / "wheels")
    shutil.copytree(ROOT / "deploy", inside / "deploy")
    shutil.copytree(site.kit(NODE), inside / "kit" / NODE)
    say(f"installing {wheel.name} in the arm64 root with deploy/install-node.sh (pip from PyPI)")
    started = time.monotonic()
    pip_env = ["env", "PIP_CERT=/etc/ssl/host-ca.crt"] if HOST_CA.exists() else []
    installed = chroot.run([*pip_env, "sh", "/deploy/install-node.sh", f"/kit/{NODE}", f"/wheels/{wheel.name}"])
    if installed.returncode != 0:
        raise RuntimeError("deploy/install-node.sh failed in the arm64 root (its output is above)")
    unit = f"/etc/systemd/system/{UNIT.name}"
    verified = chroot.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    if verified.returncode != 0 or verified.stderr:
        raise RuntimeError(f"systemd-analyze verify {unit} in the arm64 root: {verified.stderr}")
    venv = chroot.run(["du", "-sm", "/opt/manta"], capture_output=True).stdout.split()[0].decode()
    say(f"installed in {time.monotonic() - started:.0f} s; /opt/manta holds {venv} MB")
    data = inside / "srv" / "manta-data"
    data.mkdir(parents=True)
    np.save(data / "numbers.npy", np.arange(10))
    with (inside / "etc" / "manta" / "node.toml").open("a") as config:  # [datasets] is its last table
        config.write('"numbers.npy" = "/srv/manta-data/numbers.npy"\n')
    log = work / "node.log"
    command = ["setpriv", "--reuid=manta", "--regid=manta", "--init-groups", "--", *exec_start()]
    env = {**CLEAN_ENV, "HOME": "/var/lib/manta-node", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        node = subprocess.Popen(["chroot", str(inside), "env", *[f"{k}={v}" for k, v in env.items()], *command],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(f"node {NODE} ready", log, node, timeout=600)
        time.sleep(10)  # settled: status published, nothing to do
        # chroot, env and setpriv each exec the next: the process is the agent (in qemu-user)
        say(f"idle agent RSS: {rss_kib(node.pid) / 1024:.0f} MiB (the qemu-user process: an upper bound)")
        summary = coordinate(site, ports, work)
    finally:
        stop_process(node, timeout=40)
    store = RunStore.open(summary.store_path)
    durations = [r["duration"] for r in store.runs() if r["task"] == "worker" and r["node"] == NODE]
    if summary.state != "stopped" or not durations:
        raise RuntimeError(f"the swarm did not finish on the node: {summary.state} {summary.reason}")
    times = ", ".join(f"{d:.2f}" for d in durations)
    say(f"swarm {summary.state} after {summary.iterations} iterations; the node's worker task times: {times} s")
    say(f"the node stopped with exit code {node.returncode} after SIGTERM")


def coordinate(site: Site, ports: dict[int, int], work: Path) -> RunSummary:
    kit = site.root / "coordinator"
    files = TlsFiles(kit / "ca.crt", kit / "coordinator.crt", kit / "coordinator.key")
    address = BrokerAddress.parse(f"mqtts://127.0.0.1:{ports[8884]}").with_tls(files)
    options = CoordinatorOptions(runs_dir=work / "runs", min_nodes=1, wait_nodes=300, mqtt_version="5",
                                 signing_key=site.root / "owner.key")  # fmt: skip
    return Coordinator(load_swarm(SWARM), address, options, ConsoleProgress()).run()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pi-check-") as tmp:
        try:
            check(Path(tmp))
        except Missing as exc:
            say(f"cannot run here: {exc}")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
