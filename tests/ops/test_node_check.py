"""``edge-node check`` against a real Mosquitto with passwords and the site ACL, and with the
site's certificates: each problem is one line saying what to check, and the exit code says
whether anything is wrong. ``edge-node start`` refuses a node whose identity is not its id.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manta_mqtt.tools.mosquitto import SITE_ACL, MosquittoProcess, free_port, node_acl

from ..conftest import AS_NOBODY, ROOT, mosquitto_binary, skip_unless_nobody_can_run_this_checkout
from ..security.test_tls import Site, site

__all__ = ["site"]  # the fixture

USERS = {"n1": "n1-secret", "n2": "n2-secret"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """Mosquitto with a password file and the site ACL (n1 and n2 enrolled), as test_acl.py."""
    binary = mosquitto_binary()
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    password_file = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run([passwd, *(["-c"] if i == 0 else []), "-b", str(password_file), user, password], check=True)
    acl = tmp_path / "manta.acl"
    acl.write_text(SITE_ACL.read_text() + node_acl(USERS))
    extra = f"allow_anonymous false\npassword_file {password_file}\nacl_file {acl}\n"
    server = MosquittoProcess(tmp_path / "mosquitto", extra=extra, binary=binary).start()
    yield server
    server.stop()


def node_toml(folder: Path, node_id: str, broker: list[str], datasets: dict[str, str] | None = None) -> Path:
    """A node.toml in ``folder`` with the ``[broker]`` lines given and a dataset that exists."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.npz").write_bytes(b"data")
    sets = datasets if datasets is not None else {"data.npz": "data.npz"}
    lines = ["[node]", f'id = "{node_id}"', f'data_dir = "{folder / "state"}"', "[broker]", *broker, "[datasets]"]
    lines += [f'"{name}" = "{path}"' for name, path in sets.items()]
    config = folder / "node.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def password_node(
    tmp_path: Path,
    server: MosquittoProcess,
    node_id: str,
    user: str,
    password: str,
    datasets: dict[str, str] | None = None,
) -> Path:
    folder = tmp_path / node_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "password").write_text(password + "\n")
    (folder / "password").chmod(0o600)
    broker = [f'url = "{server.url}"', f'username = "{user}"', 'password_file = "password"']
    return node_toml(folder, node_id, broker, datasets)


def edge_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_node.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.removeprefix("problem: ") for line in result.stderr.splitlines() if line.startswith("problem: ")]


def test_all_good(secured: MosquittoProcess, tmp_path: Path) -> None:
    result = edge_node("check", "--config", str(password_node(tmp_path, secured, "n1", "n1", USERS["n1"])))
    assert result.returncode == 0, result.stderr
    assert "broker: connected and logged in as 'n1'" in result.stdout and "dataset data.npz" in result.stdout
    assert result.stdout.rstrip().endswith("all well") and result.stderr == ""


def test_a_wrong_password_is_not_authorised(secured: MosquittoProcess, tmp_path: Path) -> None:
    result = edge_node("check", "--config", str(password_node(tmp_path, secured, "n1", "n1", "wrong")))
    assert result.returncode == 1
    assert problems(result) == ["not authorised by the broker: check [broker] username and password_file"]


def test_nothing_listening_is_refused(tmp_path: Path) -> None:
    port = free_port()
    config = node_toml(tmp_path / "n1", "n1", [f'url = "mqtt://127.0.0.1:{port}"'])
    result = edge_node("check", "--config", str(config), "--timeout", "3")
    assert result.returncode == 1
    [problem] = problems(result)
    assert problem == f"refused: cannot connect to 127.0.0.1:{port}: connection refused (is the broker running, " + (
        "and is this its port?)"
    )
    offline = edge_node("check", "--config", str(config), "--offline")
    assert offline.returncode == 0 and "all well (broker not tried)" in offline.stdout, offline.stderr


def test_a_missing_dataset(secured: MosquittoProcess, tmp_path: Path) -> None:
    config = password_node(
        tmp_path, secured, "n1", "n1", USERS["n1"], datasets={"data.npz": "data.npz", "gone.npz": "gone.npz"}
    )
    result = edge_node("check", "--config", str(config))
    assert result.returncode == 1
    [problem] = problems(result)
    assert problem.startswith("dataset 'gone.npz': nothing at ") and "gone.npz (check [datasets]" in problem
    assert "logged in as 'n1'" in result.stdout  # the broker is still tried
    assert "1 problem found" in result.stderr


def test_an_unreadable_dataset(tmp_path: Path) -> None:
    """Run as another user (root reads everything): the dataset is there, but not for this user."""
    skip_unless_nobody_can_run_this_checkout()
    folder = Path(tempfile.mkdtemp(prefix="manta-check-"))  # pytest's tmp_path is private to root
    try:
        folder.chmod(0o755)
        config = node_toml(folder, "n1", ['url = "mqtt://127.0.0.1:1"'])
        (folder / "data.npz").chmod(0o600)
        result = subprocess.run(
            [*AS_NOBODY, sys.executable, "-m", "edge_node.cli", "check", "--config", str(config), "--offline"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        )
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problems(result) == [
        f"dataset 'data.npz': {folder / 'data.npz'} is not readable by this user (check its owner and mode)"
    ]


def test_a_node_id_that_is_not_its_username(secured: MosquittoProcess, tmp_path: Path) -> None:
    """n1's credentials in n2's config: the broker lets it in, and its ACL would drop all it publishes."""
    config = password_node(tmp_path, secured, "n2", "n1", USERS["n1"])
    result = edge_node("check", "--config", str(config))
    assert result.returncode == 1
    assert "logged in as 'n1'" in result.stdout
    assert problems(result) == [
        "[broker] username 'n1' is not [node] id 'n2': the broker's ACL lets a node publish only under "
        "its own user name (make them the same)"
    ]
    start = edge_node("start", "--config", str(config))
    assert start.returncode == 1 and start.stderr.startswith("Error: [broker] username 'n1' is not [node] id 'n2'")
    assert "ready" not in start.stderr


def test_a_node_id_that_is_not_its_certificate_cn(site: Site, tmp_path: Path) -> None:
    folder = tmp_path / "n2"
    folder.mkdir()
    crt, key = site.pki.issue("n1")  # n1's certificate in n2's config
    for source, name in ((site.pki.ca(), "ca.crt"), (crt, "node.crt"), (key, "node.key")):
        shutil.copy(source, folder / name)
    broker = [f'url = "mqtts://127.0.0.1:{site.nodes}"', 'tls_ca = "ca.crt"', 'tls_cert = "node.crt"']
    config = node_toml(folder, "n2", [*broker, 'tls_key = "node.key"'])
    result = edge_node("check", "--config", str(config))
    assert result.returncode == 1
    assert "logged in with certificate CN 'n1'" in result.stdout
    assert problems(result) == [
        f"[broker] tls_cert {folder / 'node.crt'} is for 'n1' (CN), not for [node] id 'n2': the broker takes "
        "the CN as the node's identity (use this node's certificate)"
    ]
    start = edge_node("start", "--config", str(config))
    assert start.returncode == 1 and "is for 'n1' (CN), not for [node] id 'n2'" in start.stderr

    crt, key = site.pki.issue("n2", "stranger")  # right name, a CA the broker does not trust
    shutil.copy(crt, folder / "node.crt")
    shutil.copy(key, folder / "node.key")
    refused = edge_node("check", "--config", str(config))
    assert refused.returncode == 1
    [problem] = problems(refused)
    assert problem.startswith("not authorised by the broker (the broker closed the connection")
    assert "refused our certificate" in problem and problem.endswith("check [broker] tls_cert and tls_key")


def test_a_broker_certificate_for_another_host_is_a_tls_problem(site: Site, tmp_path: Path) -> None:
    folder = tmp_path / "n1"
    folder.mkdir()
    crt, key = site.pki.issue("n1")
    for source, name in ((site.pki.ca("stranger"), "ca.crt"), (crt, "node.crt"), (key, "node.key")):
        shutil.copy(source, folder / name)
    broker = [f'url = "mqtts://127.0.0.1:{site.nodes}"', 'tls_ca = "ca.crt"', 'tls_cert = "node.crt"']
    result = edge_node("check", "--config", str(node_toml(folder, "n1", [*broker, 'tls_key = "node.key"'])))
    assert result.returncode == 1
    [problem] = problems(result)
    assert problem.startswith("TLS: TLS with 127.0.0.1:") and "is not trusted" in problem


def test_config_errors_are_one_line_each(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nid = "n1"\n[broker]\npasword_file = "p"\n[dataset]\n')
    result = edge_node("check", "--config", str(config))
    assert result.returncode == 1
    assert problems(result) == [
        "unknown key 'pasword_file' in [broker]; did you mean password_file?",
        "unknown table [dataset]; did you mean [datasets]?",
    ]
    assert "Traceback" not in result.stderr


def test_start_with_a_wrong_password_says_so_once_and_keeps_trying(secured: MosquittoProcess, tmp_path: Path) -> None:
    config = password_node(tmp_path, secured, "n1", "n1", "wrong")
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen(
            [sys.executable, "-m", "edge_node.cli", "start", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 60  # attempts at 0, 1, 3 and 7 s: wait for the third
        while log.read_text().count("still cannot connect") < 2:
            assert time.monotonic() < deadline and node.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        node.send_signal(signal.SIGTERM)
        code = node.wait(30)
    text = log.read_text()
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    assert errors[0].endswith(
        "not authorised by the broker: check [broker] username and password_file; retrying with back-off"
    )
    assert "still cannot connect (not authorised)" in text and "unreachable" not in text
    assert code == 0  # stopped while retrying: a clean exit
