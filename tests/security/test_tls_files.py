"""TLS files are checked where they are given (node.toml, --tls-* options), before any connection:
every problem is named with its file and field, a key others can read is warned about, and TLS
files with a plaintext mqtt:// URL are refused rather than silently unused."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from edge_node.cli import cli as edge_cli
from edge_node.config import ConfigError, NodeConfig
from manta_mqtt.cli.main import cli
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from manta_mqtt.transport.tls import TlsFileError, TlsFiles

from .test_tls import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def load(ca: Path | None, cert: Path | None, key: Path | None) -> tuple[TlsFiles | None, list[str]]:
    warnings: list[str] = []
    return TlsFiles.load(ca, cert, key, warn=warnings.append), warnings


def test_good_files_load_and_a_key_others_can_read_is_warned_about(pki: Pki) -> None:
    cert, key = pki.issue("n1")
    assert load(None, None, None) == (None, [])
    assert load(pki.ca(), cert, key) == (TlsFiles(pki.ca(), cert, key), [])
    assert load(pki.ca(), None, None)[0] == TlsFiles(pki.ca())
    assert len(TlsFiles(pki.ca()).context().get_ca_certs()) == 1  # the site CA only, not every public CA too
    key.chmod(0o644)
    files, warnings = load(pki.ca(), cert, key)
    assert files is not None and files.common_name() == "n1"
    assert warnings == [
        f"{key} holds a private key but is readable by group and others (mode 0644); run: chmod 600 {key}"
    ]


def test_unusable_files_are_refused_by_name(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.issue("n1")
    other_cert, other_key = pki.issue("n2")
    old_cert, old_key = pki.issue("n1", days=-1)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    pem = serialization.load_pem_private_key(key.read_bytes(), password=None)
    encrypted.write_bytes(
        pem.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"typed-at-a-terminal"),
        )
    )
    encrypted.chmod(0o600)
    cases: list[tuple[tuple[Path | None, Path | None, Path | None], str, str]] = [
        ((None, cert, None), "cert", "a client certificate needs its key too (give both)"),
        ((None, None, key), "key", "a client key needs its certificate too (give both)"),
        ((tmp_path / "nope.crt", None, None), "ca", f"CA certificate file {tmp_path / 'nope.crt'} does not exist"),
        ((tmp_path, None, None), "ca", f"CA certificate file {tmp_path} is not a regular file"),
        ((junk, None, None), "ca", f"CA certificate file {junk} holds no PEM certificate"),
        ((None, old_cert, old_key), "cert", f"the certificate in {old_cert} expired on "),
        ((None, cert, other_key), "key", f"{other_key} is not the key of the certificate {cert}"),
        ((None, cert, encrypted), "key", f"{encrypted} is encrypted with a passphrase, which nobody can type here"),
        ((None, other_cert, tmp_path / "gone.key"), "key", f"key file {tmp_path / 'gone.key'} does not exist"),
    ]
    for args, which, message in cases:
        with pytest.raises(TlsFileError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as caught:
            load(*args)
        assert caught.value.which == which, message


def test_tls_files_need_an_mqtts_url(pki: Pki) -> None:
    files = pki.files("n1")
    with pytest.raises(ValueError, match=r"TLS files are given but the broker URL is mqtt://h:1883; use mqtts://"):
        BrokerAddress.parse("mqtt://h").with_tls(files)
    address = BrokerAddress.parse("mqtts://h").with_tls(files).with_credentials("u", "p")
    assert address.tls_files == files and address.password == "p"
    assert repr(address).endswith(f"tls=True, tls_files={files!r})") and "'p'" not in repr(address)


def test_a_broker_certificate_for_another_name_is_refused_clearly(pki: Pki) -> None:
    cert, key = pki.issue("broker", server=True, host="elsewhere.example")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def handshake() -> None:  # one client, which hangs up when it sees the name
            connection, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(connection, server_side=True):
                pass

        thread = threading.Thread(target=handshake)
        thread.start()
        address = BrokerAddress.parse(f"mqtts://127.0.0.1:{listener.getsockname()[1]}").with_tls(TlsFiles(pki.ca()))
        link = MqttLink("n1", address, version="5", session_expiry=0)
        assert link.start(timeout=5) is False
        thread.join()
    assert link.failure.startswith("TLS: the broker's certificate is not valid for 127.0.0.1 (IP address mismatch")


def node_config(folder: Path, pki: Pki, url: str = "mqtts://broker.local:8883", cn: str = "n1", **extra: str) -> Path:
    """A node.toml with relative tls_* paths, as a site writes it."""
    cert, key = pki.issue(cn)
    shutil.copy(pki.ca(), folder / "ca.crt")
    shutil.copy(cert, folder / "node.crt")
    shutil.copy(key, folder / "node.key")
    lines = {"url": url, "tls_ca": "ca.crt", "tls_cert": "node.crt", "tls_key": "node.key", **extra}
    config = folder / "node.toml"
    table = "\n".join(f'{k} = "{v}"' for k, v in lines.items() if v)
    config.write_text(f'[node]\nid = "n1"\ndata_dir = "{folder / "data"}"\n[broker]\n{table}\n')
    return config


def test_node_config_reads_its_tls_files_relative_to_itself(pki: Pki, tmp_path: Path) -> None:
    config = NodeConfig.load(node_config(tmp_path, pki))
    assert config.broker.tls_files == TlsFiles(tmp_path / "ca.crt", tmp_path / "node.crt", tmp_path / "node.key")
    config.override(broker_url="mqtts://other:8883")  # the files stay
    assert config.broker.tls_files is not None and config.broker.host == "other"
    with pytest.raises(ConfigError, match="--broker: TLS files are given but the broker URL is mqtt://other:1883"):
        config.override(broker_url="mqtt://other")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "mqtt://broker.local:1884"}, "broker.url: TLS files are given but the broker URL is mqtt://"),
        ({"tls_key": "missing.key"}, "broker.tls_key: key file .*missing.key does not exist"),
        ({"tls_key": ""}, "broker.tls_cert: a client certificate needs its key too"),
        ({"tls_ca": "node.key"}, "broker.tls_ca: CA certificate file .*node.key holds no PEM certificate"),
    ],
)
def test_node_config_refuses_bad_tls_files_by_field(
    pki: Pki, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig.load(node_config(tmp_path, pki, **change))


def test_node_config_warns_of_a_shared_key_and_a_certificate_for_another_node(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = node_config(tmp_path, pki, cn="n2")
    (tmp_path / "node.key").chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="edge_node.config"):
        NodeConfig.load(config)
    text = caplog.text
    assert "broker.tls_key:" in text and "readable by group (mode 0640); run: chmod 600" in text
    assert "the certificate is for 'n2' (CN), not for node 'n1'" in text
    result = CliRunner().invoke(edge_cli, ["check", "--config", str(node_config(tmp_path, pki, tls_cert="gone.crt"))])
    assert (
        result.exit_code == 1
        and "broker.tls_cert: certificate file" in result.output
        and "does not exist" in result.output
    )


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> list[BrokerAddress]:
    """The address ``manta-mqtt nodes`` would connect to (no broker needed)."""
    seen: list[BrokerAddress] = []

    def node_table(address: BrokerAddress, **_: Any) -> list[dict[str, Any]]:
        seen.append(address)
        return []

    monkeypatch.setattr("manta_mqtt.tools.watch.node_table", node_table)
    return seen


def nodes(*args: str, env: dict[str, str] | None = None) -> Any:
    clean = {f"MANTA_MQTT_TLS_{k}": "" for k in ("CA", "CERT", "KEY")}
    return CliRunner().invoke(cli, ["nodes", *args], env={**clean, **(env or {})}, prog_name="manta-mqtt")


def test_the_tls_options_and_their_environment_variables(pki: Pki, connected: list[BrokerAddress]) -> None:
    cert, key = pki.issue("monitor", "operators")
    options = nodes("--broker", "mqtts://h", "--tls-ca", str(pki.ca()), "--tls-cert", str(cert), "--tls-key", str(key))
    env = {"MANTA_MQTT_TLS_CA": str(pki.ca()), "MANTA_MQTT_TLS_CERT": str(cert), "MANTA_MQTT_TLS_KEY": str(key)}
    from_env = nodes("--broker", "mqtts://h", env=env)
    assert options.exit_code == 0 and from_env.exit_code == 0, options.output + from_env.output
    assert connected[0].tls_files == connected[1].tls_files == TlsFiles(pki.ca(), cert, key)


def test_bad_tls_options_exit_2_naming_the_option(pki: Pki, connected: list[BrokerAddress]) -> None:
    cert, key = pki.issue("monitor", "operators")
    plaintext = nodes("--broker", "mqtt://h", "--tls-ca", str(pki.ca()))
    assert plaintext.exit_code == 2 and "Invalid value for '--broker'" in plaintext.stderr
    assert "TLS files are given but the broker URL is mqtt://h:1883; use mqtts://" in plaintext.stderr
    alone = nodes("--broker", "mqtts://h", "--tls-cert", str(cert))
    assert alone.exit_code == 2 and "Invalid value for '--tls-cert': a client certificate needs its key" in alone.stderr
    missing = nodes("--broker", "mqtts://h", "--tls-ca", "/nonexistent/ca.crt")
    assert (
        missing.exit_code == 2
        and "'--tls-ca': CA certificate file /nonexistent/ca.crt does not exist" in missing.stderr
    )
    key.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IROTH)
    shared = nodes("--broker", "mqtts://h", "--tls-cert", str(cert), "--tls-key", str(key))
    assert shared.exit_code == 0 and f"warning: {key} holds a private key but is readable by others" in shared.stderr
    assert connected == [BrokerAddress.parse("mqtts://h").with_tls(TlsFiles(None, cert, key))]
