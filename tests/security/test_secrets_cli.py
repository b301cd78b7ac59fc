"""manta-mqtt takes broker passwords from a file or the environment; on its command line, it warns."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from manta_mqtt.cli.main import broker_address, cli
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.transport.mqtt import BrokerAddress

from ..conftest import ROOT, mosquitto_binary
from ..test_e2e_swarm import COUNTER

SECRET = "s3cr3t-Pa55"
URL = "mqtt://127.0.0.1:1"
NO_ENV = {"MANTA_MQTT_USERNAME": "", "MANTA_MQTT_PASSWORD": "", "MANTA_MQTT_PASSWORD_FILE": ""}


def private_file(path: Path, text: str = SECRET, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> list[BrokerAddress]:
    """The addresses ``run``, ``nodes`` and ``watch`` would connect to (no broker needed)."""
    seen: list[BrokerAddress] = []

    class Coordinator:
        def __init__(self, swarm: object, address: BrokerAddress, options: object) -> None:
            seen.append(address)

        def run(self) -> SimpleNamespace:
            return SimpleNamespace(
                swarm_id="s",
                state="stopped",
                reason="",
                iterations=0,
                metrics={},
                rejected={},
                store_path="x",
                kept=True,
                exit_code=0,
            )

    def node_table(address: BrokerAddress, **_: Any) -> list[dict[str, Any]]:
        seen.append(address)
        return []

    def watch(address: BrokerAddress, **_: Any) -> None:
        seen.append(address)

    monkeypatch.setattr("manta_mqtt.coordinator.coordinator.Coordinator", Coordinator)
    monkeypatch.setattr("manta_mqtt.tools.watch.node_table", node_table)
    monkeypatch.setattr("manta_mqtt.tools.watch.watch", watch)
    return seen


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env={**NO_ENV, **(env or {})}, prog_name="manta-mqtt")


@pytest.mark.parametrize("command", ["run", "nodes", "watch"])
def test_password_file_and_username(tmp_path: Path, connected: list[BrokerAddress], command: str) -> None:
    password = private_file(tmp_path / "pw")
    args = [str(COUNTER)] if command == "run" else []
    result = invoke(command, *args, "--broker", URL, "--username", "coord", "--password-file", str(password))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # nothing to warn about
    assert [(a.username, a.password) for a in connected] == [("coord", SECRET)]


def test_credentials_from_the_environment(tmp_path: Path, connected: list[BrokerAddress]) -> None:
    password = private_file(tmp_path / "pw")
    env = {"MANTA_MQTT_USERNAME": "coord", "MANTA_MQTT_PASSWORD_FILE": str(password)}
    assert invoke("nodes", "--broker", URL, env=env).stderr == ""
    assert invoke("watch", "--broker", URL, env={"MANTA_MQTT_USERNAME": "u", "MANTA_MQTT_PASSWORD": "p"}).stderr == ""
    assert [(a.username, a.password) for a in connected] == [("coord", SECRET), ("u", "p")]


@pytest.mark.parametrize("command", ["run", "nodes", "watch"])
def test_a_password_on_the_command_line_works_but_warns(command: str, connected: list[BrokerAddress]) -> None:
    """The deprecated --password, and a password inside the URL: ps shows both to every user."""
    args = [str(COUNTER)] if command == "run" else []
    for extra, where in ((["--password", SECRET], "--password"), ([], "the password in --broker")):
        url = URL if extra else f"mqtt://u:{SECRET}@127.0.0.1:1"
        result = invoke(command, *args, "--broker", url, *extra)
        assert result.exit_code == 0, result.output
        assert f"warning: {where} is visible in ps; use --password-file or MANTA_MQTT_PASSWORD" in result.stderr
    assert [a.password for a in connected] == [SECRET, SECRET]


@pytest.mark.parametrize("command", ["run", "nodes", "watch"])
def test_a_missing_password_file_exits_2_naming_it(tmp_path: Path, command: str) -> None:
    args = [str(COUNTER)] if command == "run" else []
    missing = tmp_path / "nope"
    result = invoke(command, *args, "--broker", URL, "--password-file", str(missing))
    assert result.exit_code == 2 and f"password file {missing} does not exist" in result.stderr
    assert "'--password-file'" in result.stderr
    result = invoke(command, *args, "--broker", URL, env={"MANTA_MQTT_PASSWORD_FILE": str(missing)})
    assert result.exit_code == 2 and "MANTA_MQTT_PASSWORD_FILE" in result.stderr and str(missing) in result.stderr


def test_a_shared_password_file_is_warned_about(tmp_path: Path, connected: list[BrokerAddress]) -> None:
    password = private_file(tmp_path / "pw", mode=0o644)
    result = invoke("nodes", "--broker", URL, "--password-file", str(password))
    assert result.exit_code == 0
    assert f"warning: {password} holds a password but is readable by group and others" in result.stderr
    assert f"chmod 600 {password}" in result.stderr and connected[0].password == SECRET


def test_which_password_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line before the environment, a file before a value, anything before the URL."""
    file_a, file_b = private_file(tmp_path / "a", "from-a"), private_file(tmp_path / "b", "from-b")
    env = {"MANTA_MQTT_PASSWORD_FILE": str(file_b), "MANTA_MQTT_PASSWORD": "from-env"}
    url = "mqtt://u:from-url@h"
    assert broker_address(url, None, file_a, None, env).password == "from-a"
    assert broker_address(url, None, None, "from-option", env).password == "from-option"
    assert broker_address(url, None, None, None, env).password == "from-b"
    assert broker_address(url, None, None, None, {"MANTA_MQTT_PASSWORD": "from-env"}).password == "from-env"
    assert broker_address(url, None, None, None, {}).password == "from-url"
    assert broker_address("mqtt://h", "me", None, None, {}) == BrokerAddress("h", 1883, "me", None)
    capsys.readouterr()
    with pytest.raises(click.UsageError, match="not both"):
        broker_address("mqtt://h", None, file_a, "x", {})
    with pytest.raises(click.BadParameter, match="unsupported broker URL scheme"):
        broker_address("ftp://h", None, None, None, {})


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A Mosquitto that lets in only user ``coordinator`` with SECRET."""
    binary = mosquitto_binary()
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    users = tmp_path / "passwd"
    subprocess.run([passwd, "-c", "-b", str(users), "coordinator", SECRET], check=True)
    extra = f"allow_anonymous false\npassword_file {users}\n"
    with MosquittoProcess(tmp_path / "mosquitto", extra=extra, binary=binary) as server:
        yield server


def test_the_password_file_reaches_a_real_broker(password_broker: MosquittoProcess, tmp_path: Path) -> None:
    def nodes(password: str, *extra: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **NO_ENV, "MANTA_MQTT_USERNAME": "coordinator"}
        command = ["nodes", "--broker", password_broker.url, "--mqtt-version", "5", "--json", *extra]
        private_file(tmp_path / "pw", password)
        return subprocess.run(
            [sys.executable, "-m", "manta_mqtt.cli.main", *command, "--password-file", str(tmp_path / "pw")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )

    right = nodes(SECRET)
    assert right.returncode == 0 and right.stdout.strip() == "[]" and right.stderr == "", right.stderr
    wrong = nodes("wrong")
    assert wrong.returncode == 1 and "refused user 'coordinator': not authorised" in wrong.stderr
    assert "Traceback" not in wrong.stderr
