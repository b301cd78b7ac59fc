"""``manta-mqtt run`` against a broker that will not have it: one line that says what to check,
no traceback, exit 3, and no run folder left behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from manta_mqtt.tools.mosquitto import MosquittoProcess

from ..conftest import BrokerUnderTest, mosquitto_binary
from .test_coordinator_signals import RunProcess, counter_copy


def fails_in_one_line(tmp_path: Path, *args: str) -> str:
    runs = tmp_path / "runs"
    swarm = counter_copy(tmp_path, "swarm")
    proc = RunProcess(tmp_path, "run", [str(swarm), "--runs-dir", str(runs), *args])
    assert proc.wait(60) == 3, proc.stderr()
    err = proc.stderr().strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not runs.exists() or not any(runs.iterdir()), "a run folder was left behind"
    return err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused(tmp_path: Path) -> None:
    err = fails_in_one_line(tmp_path, "--broker", f"mqtt://127.0.0.1:{free_port()}")
    assert "connection refused (is the broker running, and is this its port?)" in err


def test_tls_against_a_plaintext_port(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    err = fails_in_one_line(tmp_path, "--broker", f"mqtts://127.0.0.1:{mosquitto.port}", "--mqtt-version", "5")
    assert err.startswith("Error: TLS with 127.0.0.1:"), err


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_no_answer(tmp_path: Path, silent_port: int) -> None:
    err = fails_in_one_line(tmp_path, "--broker", f"mqtt://127.0.0.1:{silent_port}", "--mqtt-version", "5")
    assert "no answer from 127.0.0.1:" in err and "in time" in err


def test_not_authorised(tmp_path: Path) -> None:
    binary = mosquitto_binary()
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed")
    password_file = tmp_path / "passwd"
    subprocess.run([passwd, "-c", "-b", str(password_file), "coordinator", "right"], check=True)
    extra = f"allow_anonymous false\npassword_file {password_file}\n"
    server = MosquittoProcess(tmp_path / "mosquitto", extra=extra, binary=binary).start()
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    wrong.chmod(0o600)
    try:
        err = fails_in_one_line(
            tmp_path,
            *("--broker", server.url, "--username", "coordinator", "--password-file", str(wrong)),
        )
    finally:
        server.stop()
    assert "refused user 'coordinator': not authorised (check --username and --password-file)" in err


def test_resume_of_a_folder_without_a_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    swarm = counter_copy(tmp_path, "swarm")
    proc = RunProcess(tmp_path, "run", [str(swarm), "--resume", str(tmp_path / "empty")])
    assert proc.wait(60) == 1
    err = proc.stderr().strip()
    assert err.startswith("Error: cannot resume: no run at") and len(err.splitlines()) == 1, err
