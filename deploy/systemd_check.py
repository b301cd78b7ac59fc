"""``make systemd-check``: the edge node's unit, hardening and all, under a real systemd.

Builds once, and caches, a Debian bookworm root for this machine's architecture with debootstrap
(systemd, dbus, python3-venv, sudo); boots a copy of it with ``systemd-nspawn --boot`` (systemd is
PID 1 there; the host's network, so a site broker on this host's loopback is reachable); installs
the node with deploy/install-node.sh as docs/deploy.md says; ``systemctl start manta-edge-node``;
runs the counter swarm on it through the site's coordinator kit; checks the unit's journal for
hardening denials; then starts a ten-minute task and times ``systemctl stop``, which must end it
within the unit's TimeoutStopSec, the agent logging the kill after its stop grace. Needs root,
debootstrap, systemd-nspawn and Mosquitto; anything missing stops it with one line saying what.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from check_site import (
    CLEAN_ENV,
    UNIT,
    Missing,
    SiteUnderTest,
    add_dataset,
    debootstrap_root,
    fresh_copy,
    need_mosquitto,
    pip_env,
    running_site,
    stage_install,
    worker_times,
)

CACHE = Path(os.environ.get("SYSTEMD_CHECK_CACHE", Path.home() / ".cache" / "manta-systemd-check"))
MIRROR = os.environ.get("SYSTEMD_CHECK_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "python3,python3-venv,ca-certificates,systemd,systemd-sysv,dbus,procps,sudo"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
NODE = "systemd-check"
SERVICE = UNIT.stem
#: Journal lines that mean the hardening got in the agent's way (or anything crashed).
DENIAL = re.compile(
    r"status=31/SYS|SIGSYS|Bad system call|signal 31\b|Operation not permitted|Permission denied"
    r"|Read-only file system|PermissionError|Traceback|code=killed|code=dumped|Failed with result"
    r"|Main process exited, code=exited, status=[1-9]",
)


def say(text: str) -> None:
    print(f"systemd-check: {text}", flush=True)


def hardening_denials(journal: str) -> list[str]:
    """The lines of ``journal`` that show a denial, a crash or a failed exit."""
    return [line for line in journal.splitlines() if DENIAL.search(line)]


def prerequisites() -> None:
    if os.geteuid() != 0:
        raise Missing("must run as root (debootstrap, systemd-nspawn)")
    tools = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container", "nsenter": "util-linux"}
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            raise Missing(f"{tool} is not installed (apt-get install {package})")
    need_mosquitto()


class Container:
    """A copy of the base root booted with systemd-nspawn; ``run`` runs a command in it as root."""

    def __init__(self, base: Path, console: Path) -> None:
        self.path = fresh_copy(base, CACHE / "work")
        (self.path / "etc" / "hostname").write_text(f"{NODE}\n")  # debootstrap left the host's name
        (self.path / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {NODE}\n")  # sudo resolves it
        self.console = console
        command = [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={NODE}",
            "-D",
            str(self.path),
        ]
        with console.open("wb") as out:
            self.nspawn = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.leader = 0

    def boot(self, timeout: float = 120.0) -> str:
        """Until systemd inside says it is up; its state (``running`` or ``degraded``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise Missing(f"systemd-nspawn --boot exited with {self.nspawn.returncode}: {self.last_line()}")
            children = subprocess.run(["pgrep", "-P", str(self.nspawn.pid)], capture_output=True, text=True)
            pids = children.stdout.split()
            if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "systemd":
                self.leader = int(pids[0])
                state = self.run(["systemctl", "is-system-running", "--wait"], capture_output=True, text=True)
                if state.stdout.strip() in ("running", "degraded"):
                    return str(state.stdout.strip())
            time.sleep(0.5)
        raise Missing(f"systemd in the container did not come up within {timeout:.0f} s: {self.last_line()}")

    def last_line(self) -> str:
        lines = self.console.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(nothing on its console)"

    def run(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", *[f"{k}={v}" for k, v in CLEAN_ENV.items()]]
        return subprocess.run(["nsenter", f"--target={self.leader}", "--all", *env, *command], **kwargs)  # type: ignore[call-overload, no-any-return]

    def output(self, *command: str) -> str:
        done = self.run(list(command), capture_output=True, text=True)
        return str(done.stdout).strip()

    def close(self) -> None:
        """Power it off (SIGRTMIN+4 to its systemd), and kill it if it takes more than a minute."""
        if self.nspawn.poll() is None and self.leader:
            os.kill(self.leader, signal.SIGRTMIN + 4)
        try:
            self.nspawn.wait(60)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            self.nspawn.wait()


def check(work: Path) -> None:
    prerequisites()
    base = debootstrap_root(CACHE, ARCH, PACKAGES, MIRROR, say)
    with running_site(work, NODE) as site:
        container = Container(base, work / "console.log")
        try:
            started = time.monotonic()
            state = container.boot()
            say(f"systemd-nspawn --boot: systemd {state} after {time.monotonic() - started:.1f} s")
            install(container, site)
            run_service(container, site)
        finally:
            container.close()


def install(container: Container, site: SiteUnderTest) -> None:
    wheel = stage_install(container.path, site.site, NODE)
    say(f"installing {wheel.name} with deploy/install-node.sh (systemd running: daemon-reload, enable)")
    started = time.monotonic()
    done = container.run([*pip_env(), "sh", "/deploy/install-node.sh", f"/kit/{NODE}", f"/wheels/{wheel.name}"])
    if done.returncode != 0:
        raise RuntimeError("deploy/install-node.sh failed in the container (its output is above)")
    enabled = container.output("systemctl", "is-enabled", SERVICE)
    if enabled != "enabled":
        raise RuntimeError(f"systemctl is-enabled {SERVICE}: {enabled}")
    size = container.output("du", "-sm", "/opt/manta").split()[0]
    say(f"installed and {enabled} in {time.monotonic() - started:.0f} s; /opt/manta holds {size} MB")
    add_dataset(container.path)
    check_node = ["sudo", "-u", "manta", "/opt/manta/bin/edge-node", "check", "--config", "/etc/manta/node.toml"]
    checked = container.run(check_node)
    if checked.returncode != 0:
        raise RuntimeError("edge-node check found problems (above)")


def journal(container: Container) -> str:
    return container.output("journalctl", "-u", SERVICE, "--no-pager", "-o", "short-monotonic")


def wait_in_journal(container: Container, text: str, count: int, timeout: float) -> None:
    """Until ``text`` is in the unit's journal ``count`` times."""
    deadline = time.monotonic() + timeout
    while journal(container).count(text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the unit never logged {text!r} ({count}x):\n{journal(container)[-3000:]}")
        time.sleep(0.5)


def show(container: Container, *names: str) -> dict[str, str]:
    lines = container.output("systemctl", "show", SERVICE, *[f"--property={n}" for n in names]).splitlines()
    return dict(line.split("=", 1) for line in lines)


def run_service(container: Container, site: SiteUnderTest) -> None:
    started = time.monotonic()
    if container.run(["systemctl", "start", SERVICE]).returncode != 0:
        raise RuntimeError(f"systemctl start {SERVICE} failed:\n{journal(container)[-3000:]}")
    wait_in_journal(container, f"node {NODE} ready", 1, timeout=120)
    say(f"systemctl start {SERVICE}: the agent connected (TLS) and was ready after {time.monotonic() - started:.1f} s")
    time.sleep(10)  # settled: status published, nothing to do
    pid = show(container, "MainPID")["MainPID"]
    status = dict(line.split(":", 1) for line in container.output("cat", f"/proc/{pid}/status").splitlines())
    say(f"idle agent RSS (MainPID {pid}): {int(status['VmRSS'].split()[0]) / 1024:.0f} MiB")
    confined(container, pid, {name: status[name].strip() for name in ("Seccomp", "NoNewPrivs", "CapEff", "CapBnd")})
    summary = site.coordinate()
    times = ", ".join(f"{d:.2f}" for d in worker_times(summary, NODE))
    say(f"swarm {summary.state} after {summary.iterations} iterations; the worker task times: {times} s")
    stop_during_long_task(container, site, runs_before=summary.iterations)
    unit_log = journal(container)
    denials = hardening_denials(unit_log)
    if denials:
        raise RuntimeError("the unit's journal shows denials or failures:\n" + "\n".join(denials))
    say(f"journalctl -u {SERVICE}: {len(unit_log.splitlines())} lines, no denial, crash or failed exit")
    exposure = container.output("systemd-analyze", "security", "--no-pager", SERVICE).splitlines()
    say(f"systemd-analyze security: {exposure[-1].strip() if exposure else '(nothing)'}")


def confined(container: Container, pid: str, status: dict[str, str]) -> None:
    """The running agent has the unit's seccomp filter, no privileges and a read-only /opt/manta."""
    touch = ["nsenter", f"--target={pid}", "--mount", "touch", "/opt/manta/.probe"]
    probe = container.run(touch, capture_output=True, text=True)
    expected = {"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0" * 16, "CapBnd": "0" * 16}
    if status != expected or probe.returncode == 0:
        raise RuntimeError(
            f"the agent is not confined as the unit says: {status}; touch /opt/manta: {probe.returncode}"
        )
    say(f"the agent runs confined: {status} (Seccomp 2: a filter); in its mount namespace {probe.stderr.strip()}")


def stop_during_long_task(container: Container, site: SiteUnderTest, runs_before: int) -> None:
    """A worker task that sleeps ten minutes, then ``systemctl stop``: timed, and its outcome read."""
    coordinator = site.coordinator(delay=600, rounds=1)
    thread = threading.Thread(target=coordinator.run, daemon=True)
    thread.start()
    try:
        wait_in_journal(container, "running worker iteration", runs_before + 1, timeout=120)
        time.sleep(2)  # the task's own code is sleeping by now
        tasks = container.output("pgrep", "-u", "manta", "-f", "manta_mqtt.runtime.child")
        started = time.monotonic()
        stopped = container.run(["systemctl", "stop", SERVICE])
        took = time.monotonic() - started
    finally:
        coordinator.interrupt()
        thread.join(30)
    state = show(container, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "NRestarts")
    log = journal(container)
    killed = [line for line in log.splitlines() if "killed" in line and "task" in line]
    left = container.output("pgrep", "-u", "manta")
    seen = " ".join(tasks.split()) or "none seen"
    say(f"systemctl stop during a 600 s task (task pids {seen}): returned after {took:.1f} s; {state}")
    for line in log.splitlines():
        if "stopping" in line or "killed" in line:
            say(f"  journal: {line.strip()}")
    if stopped.returncode != 0 or state["Result"] != "success" or state["ExecMainStatus"] != "0":
        raise RuntimeError(f"systemctl stop did not end the agent cleanly: {state}\n{log[-3000:]}")
    if not killed:
        raise RuntimeError(f"the agent did not log killing its task:\n{log[-3000:]}")
    if state["NRestarts"] != "0":
        raise RuntimeError(f"systemd restarted the agent {state['NRestarts']} times:\n{log[-3000:]}")
    if left:
        raise RuntimeError(f"processes of the user manta are left after stop: {left}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="systemd-check-") as tmp:
        try:
            check(Path(tmp))
        except Missing as exc:
            say(f"cannot run here: {exc}")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
