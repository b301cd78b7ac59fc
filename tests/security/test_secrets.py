"""Broker passwords: never shown by repr/str or logs, read from files checked for their mode."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_node.config import ConfigError, NodeConfig
from manta_mqtt.transport.credentials import PasswordFileError, read_password_file
from manta_mqtt.transport.mqtt import BrokerAddress

SECRET = "s3cr3t-Pa55"


def private_file(path: Path, text: str = SECRET + "\n", mode: int = 0o600, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    path.chmod(mode)
    return path


def node_config(tmp_path: Path, broker: str) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\nid = "pi-1"\ndata_dir = "{tmp_path / "data"}"\n[broker]\nurl = "mqtt://b:1883"\n{broker}'
    )
    config.chmod(0o600)
    return config


def test_repr_and_str_of_an_address_hide_the_password() -> None:
    address = BrokerAddress.parse(f"mqtts://pi:{SECRET}@broker.local:8884")
    assert address.password == SECRET and address.username == "pi"  # still there for the connection
    shown = [
        repr(address),
        str(address),
        f"{address}",
        f"{address!r}",
        format(address),
        repr([address]),
    ]
    assert all(SECRET not in text for text in shown), shown
    assert repr(address) == "BrokerAddress(host='broker.local', port=8884, username='pi', password='***', tls=True)"
    assert "password=None" in repr(BrokerAddress("h", 1883))
    assert address == BrokerAddress("broker.local", 8884, "pi", SECRET, True)  # equality unchanged


def test_a_config_holding_an_address_logs_no_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = NodeConfig.load(node_config(tmp_path, f'username = "pi-1"\npassword = "{SECRET}"\n'))
    assert config.broker.password == SECRET
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s / %r / %s / %r", config, config, config.broker, config.broker)
    assert "password='***'" in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(config) and SECRET not in f"{config}"


def test_a_password_file_is_read(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert read_password_file(private_file(tmp_path / "pw"), warnings.append) == SECRET
    assert warnings == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "is a directory"),
        (lambda p: private_file(p / "file") / "pw", "cannot be read: Not a directory"),
        (lambda p: private_file(p / "empty", "\n"), "is empty"),
        (lambda p: private_file(p / "latin1", "caf\xe9", encoding="latin-1"), "is not UTF-8 text"),
        (lambda p: private_file(p / "model", "x" * 70_000), "is larger than"),
    ],
)
def test_an_unusable_password_file_is_refused_by_name(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(PasswordFileError) as error:
        read_password_file(path, pytest.fail)
    assert str(path) in str(error.value) and message in str(error.value)


@pytest.mark.parametrize(
    "mode, who", [(0o640, "group"), (0o604, "others"), (0o644, "group and others"), (0o600, None), (0o400, None)]
)
def test_a_password_file_others_can_read_is_warned_about(tmp_path: Path, mode: int, who: str | None) -> None:
    path = private_file(tmp_path / "pw file", mode=mode)
    warnings: list[str] = []
    assert read_password_file(path, warnings.append) == SECRET
    if who is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert f"readable by {who} (mode {mode:04o})" in warning
        assert f"chmod 600 '{path}'" in warning  # quoted: the path has a space


def test_a_pipe_works_as_a_password_file(tmp_path: Path) -> None:
    """``--password-file <(pass show broker)``: the password never touches the disk."""
    read, write = os.pipe()
    os.write(write, SECRET.encode() + b"\n")
    os.close(write)
    try:
        assert read_password_file(f"/dev/fd/{read}", pytest.fail) == SECRET
    finally:
        os.close(read)


def test_node_config_reads_its_password_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    private_file(tmp_path / "password")
    with caplog.at_level(logging.WARNING):
        config = NodeConfig.load(node_config(tmp_path, 'username = "pi-1"\npassword_file = "password"\n'))
    assert config.broker.username == "pi-1" and config.broker.password == SECRET
    assert not caplog.records


def test_node_config_refuses_a_missing_password_file_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker.password_file: password file .*/nope does not exist"):
        NodeConfig.load(node_config(tmp_path, 'password_file = "nope"\n'))


def test_node_config_warns_about_a_shared_password_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = private_file(tmp_path / "password", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="edge_node.config"):
        NodeConfig.load(node_config(tmp_path, 'password_file = "password"\n'))
    [record] = caplog.records
    assert record.levelno == logging.WARNING and f"chmod 600 {path}" in record.getMessage()


def test_node_config_warns_about_a_shared_config_holding_a_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = node_config(tmp_path, f'password = "{SECRET}"\n')
    with caplog.at_level(logging.WARNING, logger="edge_node.config"):
        NodeConfig.load(config)
        assert not caplog.records  # 0600
        config.chmod(0o644)
        NodeConfig.load(config)
    [record] = caplog.records
    assert f"chmod 600 {config}" in record.getMessage() and "password_file" in record.getMessage()
    assert SECRET not in caplog.text
