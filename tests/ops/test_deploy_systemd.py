"""deploy/systemd/manta-edge-node.service: systemd accepts it, and it fits the agent it starts.

`systemd-analyze verify` loads the unit from a scratch root (the host's own units, so that its
dependencies resolve, and a stand-in for /opt/manta/bin/edge-node); any warning fails. Running
it under a real systemd is `make systemd-check` (a booted nspawn container; root, not part of
`make test`); `make pi-check` runs its ExecStart in an arm64 root; docs/deploy.md says what was
checked where.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_node.cli import cli as edge_cli
from edge_node.config import NodeConfig

from ..conftest import ROOT

UNIT = ROOT / "deploy" / "systemd" / "manta-edge-node.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not (HOST_UNITS / "sysinit.target").exists():
        pytest.skip("systemd is not installed (apt-get install systemd): the unit cannot be verified")
    shutil.copytree(HOST_UNITS, tmp_path / HOST_UNITS.relative_to("/"), symlinks=True)
    program = Path(shlex.split(service()["ExecStart"])[0])
    stand_in = tmp_path / program.relative_to("/")
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system")
    result = subprocess.run([analyze, "verify", f"--root={tmp_path}", UNIT.name], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_the_unit_starts_the_agent_and_gives_it_its_stop_grace() -> None:
    unit = service()
    program, *args = shlex.split(unit["ExecStart"])
    assert program == "/opt/manta/bin/edge-node"  # the venv of docs/deploy.md
    assert args == ["start", "--config", "/etc/manta/node.toml"]
    checked = CliRunner().invoke(edge_cli, [*args, "--help"])  # an unknown command or option: exit 2
    assert checked.exit_code == 0 and "--config" in checked.output, checked.output
    # SIGTERM to the agent only (not to its tasks), which waits stop_grace for a running task
    assert unit["KillMode"] == "mixed" and unit["KillSignal"] == "SIGTERM"
    assert float(unit["TimeoutStopSec"].removesuffix("s")) > NodeConfig.stop_grace + 10
    assert unit["Restart"] == "always" and unit["User"] == "manta"
    # writable: its data folder only (docs/deploy.md sets data_dir to it)
    assert unit["ProtectSystem"] == "strict" and unit["ReadWritePaths"] == "/var/lib/manta-node"
    assert unit["StateDirectory"] == "manta-node"
    for flag in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert unit[flag] == "yes"
