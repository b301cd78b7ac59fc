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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from check_site import (
    CLEAN_ENV,
    UNIT,
    Missing,
    SiteUnderTest,
    add_dataset,
    debootstrap_root,
    exec_start,
    fresh_copy,
    need_mosquitto,
    pip_env,
    running_site,
    stage_install,
    worker_times,
)

from manta_mqtt.tools.processes import stop_process

CACHE = Path(os.environ.get("PI_CHECK_CACHE", Path.home() / ".cache" / "manta-pi-check"))
MIRROR = os.environ.get("PI_CHECK_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "python3,python3-venv,ca-certificates,systemd,procps"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
NODE = "pi-check"


def say(text: str) -> None:
    print(f"pi-check: {text}", flush=True)


def prerequisites() -> None:
    if os.geteuid() != 0:
        raise Missing("must run as root (debootstrap, chroot, mounts)")
    for tool in ("debootstrap", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise Missing(f"{tool} is not installed (apt-get install debootstrap qemu-user-static binfmt-support)")
    need_mosquitto()
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
    if not (BINFMT / "status").exists():
        raise Missing(f"binfmt_misc is not mounted at {BINFMT} and cannot be (a container without it?)")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Missing("no binfmt_misc entry for arm64 (apt-get install qemu-user-static binfmt-support)")


class Chroot:
    """A copy of the base root with /proc and /dev mounted; ``run`` runs a command in it."""

    def __init__(self, base: Path) -> None:
        self.path = fresh_copy(base, CACHE / "work")
        self.mounts: list[Path] = []
        for source, flags in (("/proc", ["-t", "proc", "proc"]), ("/dev", ["--bind", "/dev"])):
            target = self.path / source.lstrip("/")
            subprocess.run(["mount", *flags, str(target)], check=True)
            self.mounts.append(target)

    def run(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(["chroot", str(self.path), *command], env=CLEAN_ENV, **kwargs)  # type: ignore[call-overload, no-any-return]

    def close(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


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
    chroot = Chroot(debootstrap_root(CACHE, "arm64", PACKAGES, MIRROR, say))
    try:
        with running_site(work, NODE) as site:
            run_node(chroot, site, work)
    finally:
        chroot.close()


def run_node(chroot: Chroot, site: SiteUnderTest, work: Path) -> None:
    inside = chroot.path
    wheel = stage_install(inside, site.site, NODE)
    say(f"installing {wheel.name} in the arm64 root with deploy/install-node.sh (pip from PyPI)")
    started = time.monotonic()
    installed = chroot.run([*pip_env(), "sh", "/deploy/install-node.sh", f"/kit/{NODE}", f"/wheels/{wheel.name}"])
    if installed.returncode != 0:
        raise RuntimeError("deploy/install-node.sh failed in the arm64 root (its output is above)")
    unit = f"/etc/systemd/system/{UNIT.name}"
    verified = chroot.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    if verified.returncode != 0 or verified.stderr:
        raise RuntimeError(f"systemd-analyze verify {unit} in the arm64 root: {verified.stderr}")
    venv = chroot.run(["du", "-sm", "/opt/manta"], capture_output=True).stdout.split()[0].decode()
    say(f"installed in {time.monotonic() - started:.0f} s; /opt/manta holds {venv} MB")
    add_dataset(inside)
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
        summary = site.coordinate()
    finally:
        stop_process(node, timeout=40)
    times = ", ".join(f"{d:.2f}" for d in worker_times(summary, NODE))
    say(f"swarm {summary.state} after {summary.iterations} iterations; the node's worker task times: {times} s")
    say(f"the node stopped with exit code {node.returncode} after SIGTERM")


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
