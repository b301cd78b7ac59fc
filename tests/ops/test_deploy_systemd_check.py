"""deploy/systemd_check.py (``make systemd-check``), the parts that run without booting a container:
its journal reading, which must see a seccomp kill, and its one-line refusal where it cannot run.
The boot itself needs root and systemd-nspawn; docs/deploy.md gives what a run measured.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from ..conftest import AS_NOBODY, ROOT, skip_unless_nobody_can_run_this_checkout

SCRIPT = ROOT / "deploy" / "systemd_check.py"

#: The unit's journal from a `make systemd-check` run (short-monotonic): start, swarm, stop.
CLEAN = """\
[ 5609.125216] vm systemd[1]: Starting manta-edge-node.service - manta-mqtt edge node...
[ 5609.197039] vm systemd[1]: Started manta-edge-node.service - manta-mqtt edge node.
[ 5609.544849] vm edge-node[98]: 2026-11-24 09:59:22,484 INFO edge_node: node systemd-check ready \
(datasets: numbers.npy)
[ 5624.948944] vm systemd[1]: Stopping manta-edge-node.service - manta-mqtt edge node...
[ 5624.976545] vm edge-node[98]: 2026-11-24 09:59:37,916 WARNING edge_node: stopping: waiting up to 10 s for task \
counter-e46246ce/0/worker (stop again to kill it now)
[ 5634.995746] vm edge-node[98]: 2026-11-24 09:59:47,935 WARNING edge_node: task counter-e46246ce/0/worker killed
[ 5635.024901] vm edge-node[98]: 2026-11-24 09:59:47,965 INFO edge_node: worker iteration 0 cancelled; no result sent
[ 5635.099602] vm systemd[1]: manta-edge-node.service: Deactivated successfully.
[ 5635.100388] vm systemd[1]: Stopped manta-edge-node.service - manta-mqtt edge node.
"""
#: What systemd logged in that container when a drop-in `SystemCallFilter=~@network-io` made seccomp kill
#: the unit's main process at its first socket().
SECCOMP_KILL = """\
[ 5660.101010] vm systemd[1]: Started manta-edge-node.service - manta-mqtt edge node.
[ 5660.201010] vm systemd[1]: manta-edge-node.service: Main process exited, code=killed, status=31/SYS
[ 5660.201020] vm systemd[1]: manta-edge-node.service: Failed with result 'signal'.
"""
READ_ONLY = "[ 1.0] vm edge-node[9]: OSError: [Errno 30] Read-only file system: '/opt/manta/cache'\n"


def load_script() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # it imports its sibling check_site, as `python deploy/...` would
    try:
        spec = importlib.util.spec_from_file_location("systemd_check", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_a_clean_run_of_the_unit_shows_no_denial() -> None:
    assert load_script().hardening_denials(CLEAN) == []


def test_a_seccomp_kill_and_a_read_only_write_are_denials() -> None:
    found = load_script().hardening_denials(CLEAN + SECCOMP_KILL + READ_ONLY)
    assert found == [*SECCOMP_KILL.splitlines()[1:], READ_ONLY.strip()]


def test_it_refuses_without_root_in_one_line(tmp_path: Path) -> None:
    skip_unless_nobody_can_run_this_checkout()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SYSTEMD_CHECK_CACHE": str(tmp_path / "cache")}
    command = [*AS_NOBODY, sys.executable, str(SCRIPT)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "systemd-check: cannot run here: must run as root (debootstrap, systemd-nspawn)\n", (
        done.stdout
    )
