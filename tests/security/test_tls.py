"""TLS with client certificates, on a real Mosquitto running the shipped site config.

The broker runs broker_config/mosquitto-pi.conf as Debian loads it (a conf.d snippet of the
stock main config; only ports and /etc paths changed), with a throwaway PKI made here: the site
CA (the broker's and the nodes' certificates) and the operators' CA (coordinator, monitor). A
swarm runs over it exactly; a client without the right certificate, or speaking plaintext to a
TLS port, is refused, and our client code says why.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools.mosquitto import SITE_ACL, SITE_CONFIG, MosquittoProcess, node_acl, site_broker
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from manta_mqtt.transport.tls import TlsFiles

from ..conftest import ROOT, SIGNING_KEY, BrokerUnderTest, NodeProcess, mosquitto_binary
from ..test_e2e_swarm import COUNTER, check_counter_results, numbers

NOW = datetime.datetime.now(datetime.timezone.utc)
ENROLLED = ["n1", "n2", "n3"]  # the nodes with a block in the test's manta.acl
USAGES = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
          "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]  # fmt: skip


class Pki:
    """A throwaway PKI: the site CA, the operators' CA, and a stranger's CA nobody trusts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.cas = {name: self._ca(name) for name in ("site", "operators", "stranger")}

    def _ca(self, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
        cert = (
            self._builder(subject, subject, key.public_key(), NOW + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**{u: u in ("key_cert_sign", "crl_sign") for u in USAGES}), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        (self.folder / f"{name}-ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, until: datetime.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(NOW, until) - datetime.timedelta(days=1))
            .not_valid_after(until)
        )

    def ca(self, name: str = "site") -> Path:
        return self.folder / f"{name}-ca.crt"

    def issue(
        self, cn: str, ca: str = "site", *, server: bool = False, days: float = 2, host: str = "localhost"
    ) -> tuple[Path, Path]:
        """(certificate, key) files for ``cn``, signed by ``ca``; ``days`` < 0: already expired.

        A server's certificate names ``host`` and 127.0.0.1 (with the default ``host``)."""
        ca_key, ca_cert = self.cas[ca]
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = self._builder(subject, ca_cert.subject, key.public_key(), NOW + datetime.timedelta(days=days))
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )  # what Python 3.13's strict verification asks of certificates
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(host)]
            if host == "localhost":
                names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        stem = f"{cn}.{ca}{'' if days > 0 else '.expired'}"
        cert_file, key_file = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        cert_file.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        key_file.touch(mode=0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_file, key_file

    def files(self, cn: str, ca: str = "site", *, trust: str = "site") -> TlsFiles:
        cert, key = self.issue(cn, ca)
        return TlsFiles(self.ca(trust), cert, key)


@dataclass
class Site:
    """The site broker: ``nodes`` (8883), ``operators`` (8884) and ``local`` (1883) ports."""

    pki: Pki
    server: MosquittoProcess
    nodes: int
    operators: int
    local: int

    def address(self, port: int, files: TlsFiles | None = None) -> BrokerAddress:
        return BrokerAddress.parse(f"mqtts://127.0.0.1:{port}").with_tls(files)

    def log(self) -> str:
        return self.server.log.read_text(errors="replace")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    binary = mosquitto_binary()
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    pki = Pki(tmp_path / "pki")
    etc = tmp_path / "etc"  # stands for /etc/mosquitto/, laid out as broker_config/README.md says
    (etc / "ca").mkdir(parents=True)
    (etc / "certs").mkdir()
    shutil.copy(pki.ca("site"), etc / "ca" / "ca.crt")
    shutil.copy(pki.ca("operators"), etc / "ca" / "operators-ca.crt")
    cert, key = pki.issue("broker", server=True)
    shutil.copy(cert, etc / "certs" / "broker.crt")
    shutil.copy(key, etc / "certs" / "broker.key")
    subprocess.run([passwd, "-c", "-b", str(etc / "manta.passwd"), "monitor", "m-secret"], check=True)
    (etc / "manta.acl").write_text(SITE_ACL.read_text() + node_acl(ENROLLED))
    server, ports = site_broker(tmp_path / "broker", etc, binary=binary)
    server.start()
    try:
        yield Site(pki, server, ports[8883], ports[8884], ports[1883])
    finally:
        server.stop()


def tls_node(tmp: Path, site: Site, node_id: str, data: Path, ca: str = "site") -> NodeProcess:
    """An edge-node process with ``[broker] tls_*`` files (relative paths), its certificate signed by ``ca``."""
    broker = BrokerUnderTest("mosquitto", f"mqtts://127.0.0.1:{site.nodes}", "5", site.nodes)
    node = NodeProcess(tmp / "nodes", node_id, broker, {"numbers.npy": data})
    crt, key = site.pki.issue(node_id, ca)
    for source, name in ((site.pki.ca(), "ca.crt"), (crt, "node.crt"), (key, "node.key")):
        shutil.copy(source, node.config.parent / name)
    tls = 'tls_ca = "ca.crt"\ntls_cert = "node.crt"\ntls_key = "node.key"\n'
    node.config.write_text(node.config.read_text().replace("[broker]\n", "[broker]\n" + tls))
    return node


def coordinator(site: Site, tmp: Path, min_nodes: int = 2) -> Coordinator:
    options = CoordinatorOptions(
        runs_dir=tmp / "runs", min_nodes=min_nodes, wait_nodes=30, mqtt_version="5", signing_key=SIGNING_KEY
    )
    address = site.address(site.operators, site.pki.files("coordinator", "operators"))
    return Coordinator(load_swarm(COUNTER), address, options, ConsoleProgress())


def test_the_site_config_is_a_conf_d_snippet_that_starts_without_warnings(site: Site) -> None:
    text = SITE_CONFIG.read_text()
    for line in ("pid_file", "persistence_location", "log_dest file"):  # Debian's main config sets them
        assert f"\n{line}" not in text
    log = site.log().replace("Warning: Mosquitto should not be run as root/administrator.", "")  # the tests' root
    assert "Warning" not in log and "Error" not in log, log  # the ACL's patterns all name %u
    assert "listener 1883 127.0.0.1" in text and "listener 8883 0.0.0.0" in text  # plaintext: loopback only


def test_a_swarm_runs_exactly_over_tls_with_client_certificates(site: Site, tmp_path: Path) -> None:
    data = numbers(tmp_path)
    nodes = [tls_node(tmp_path, site, n, data).start() for n in ("n1", "n2")]
    try:
        summary = coordinator(site, tmp_path).run()
    finally:
        for node in nodes:
            node.stop()
    assert summary.state == "stopped", summary.reason
    check_counter_results(RunStore.open(summary.store_path), ["n1", "n2"], 3)
    log = site.log()  # each identity is its certificate's CN
    assert f"as coordinator-{summary.swarm_id} (p5, c0, k30, u'coordinator')" in log
    for node in ("n1", "n2"):
        assert f"as {node} (p5, c0, k30, u'{node}')" in log


def refusal(address: BrokerAddress) -> str:
    """Why a connection to ``address`` is refused (it must be)."""
    link = MqttLink("probe", address, version="auto", session_expiry=0)
    assert link.start(timeout=5) is False
    return link.failure


def test_a_client_without_the_right_certificate_is_refused_clearly(site: Site) -> None:
    pki, ca = site.pki, site.pki.ca()
    no_cert = refusal(site.address(site.nodes, TlsFiles(ca)))
    assert "wants a client certificate (--tls-cert and --tls-key" in no_cert
    stranger = refusal(site.address(site.nodes, pki.files("n1", "stranger")))
    assert "refused our certificate" in stranger and "issued by 'stranger CA'" in stranger
    expired_cert, expired_key = pki.issue("n1", days=-1)  # TlsFiles.load would refuse it: bypassed
    expired = refusal(site.address(site.nodes, TlsFiles(ca, expired_cert, expired_key)))
    assert (
        "refused our certificate" in expired and f"valid until {(NOW - datetime.timedelta(days=1)).date()}" in expired
    )
    node_on_operators = refusal(site.address(site.operators, pki.files("n1")))
    assert "refused our certificate" in node_on_operators and "CN 'n1', issued by 'site CA'" in node_on_operators
    operator_on_nodes = refusal(site.address(site.nodes, pki.files("monitor", "operators")))
    assert "refused our certificate" in operator_on_nodes
    untrusted_broker = refusal(site.address(site.nodes, pki.files("n1", trust="stranger")))
    assert "the broker's certificate is not trusted" in untrusted_broker and "stranger-ca.crt" in untrusted_broker
    plaintext = refusal(BrokerAddress.parse(f"mqtt://127.0.0.1:{site.nodes}"))
    assert "if this is a TLS port, use mqtts://" in plaintext
    tls_to_plaintext = refusal(site.address(site.local, pki.files("n1")))
    assert "does not speak TLS on this port" in tls_to_plaintext
    assert "unreachable" not in "".join([no_cert, stranger, expired, untrusted_broker, plaintext, tls_to_plaintext])


def test_a_node_refused_by_the_broker_says_why_and_keeps_trying(site: Site, tmp_path: Path) -> None:
    node = tls_node(tmp_path, site, "n1", numbers(tmp_path), ca="stranger").start()
    try:
        deadline = time.monotonic() + 30
        while "still cannot connect (not authorised)" not in node.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert node.proc is not None and node.proc.poll() is None  # still trying: the broker may be fixed
    finally:
        node.stop()
    log = node.output()
    said = [line for line in log.splitlines() if "ERROR" in line and "not authorised by the broker" in line]
    assert len(said) == 1, log  # once, then quiet retries at INFO
    assert "TLS: the broker closed the connection" not in said[0]  # what is wrong, not paho's words
    assert "(CN 'n1', issued by 'stranger CA'" in said[0] and "check [broker] tls_cert and tls_key" in said[0]
    assert "still cannot connect (not authorised)" in log
    assert "unreachable" not in log and "Traceback" not in log


def test_a_refused_reconnection_is_reported_too(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """paho reconnects by itself; when the broker then refuses us, the log says why, each way."""
    link = MqttLink("n1", site.address(site.nodes, site.pki.files("n1")), version="5")
    assert link.start()
    link._paho.reconnect_delay_set(0.2, 1)  # not the default back-off of up to 30 s
    etc = site.server.conf.parent.parent / "etc"

    def restart_until(message: str) -> None:
        site.server.stop()
        site.server.start()
        deadline = time.monotonic() + 20
        while message not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert message in caplog.text

    try:
        with caplog.at_level(logging.WARNING, logger="manta_mqtt.transport"):
            shutil.copy(site.pki.ca("stranger"), etc / "ca" / "ca.crt")  # our certificate is no longer trusted
            restart_until(f"reconnecting to mqtts://127.0.0.1:{site.nodes}: TLS: the broker closed the connection")
            assert "refused our certificate" in caplog.text
            cert, key = site.pki.issue("broker", "stranger", server=True)  # nor is the broker's, by us
            shutil.copy(cert, etc / "certs" / "broker.crt")
            shutil.copy(key, etc / "certs" / "broker.key")
            restart_until("TLS: the broker's certificate is not trusted")
    finally:
        link.stop()


def manta(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MANTA_MQTT_")}
    return subprocess.run(
        [sys.executable, "-m", "manta_mqtt.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **(env or {})},
    )


def test_the_commands_connect_with_a_certificate_or_say_why_not(site: Site, tmp_path: Path) -> None:
    cert, key = site.pki.issue("monitor", "operators")
    url = f"mqtts://127.0.0.1:{site.operators}"
    env = {"MANTA_MQTT_TLS_CA": str(site.pki.ca()), "MANTA_MQTT_TLS_CERT": str(cert), "MANTA_MQTT_TLS_KEY": str(key)}
    listed = manta("nodes", "--broker", url, "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    watched = manta("watch", "--broker", url, "--tls-ca", str(site.pki.ca()), "--tls-cert", str(cert),
                    "--tls-key", str(key), "--seconds", "0.5")  # fmt: skip
    assert watched.returncode == 0 and watched.stderr == "", watched.stderr

    node_cert, node_key = site.pki.issue("n1")  # a node's certificate, on the operators' port
    refused = manta("run", str(COUNTER), "--broker", url, "--tls-ca", str(site.pki.ca()), "--tls-cert",
                    str(node_cert), "--tls-key", str(node_key), "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    assert refused.returncode == 3 and "Traceback" not in refused.stderr  # 3: no connection to the broker
    assert "TLS with 127.0.0.1:" in refused.stderr and "refused our certificate" in refused.stderr
    anonymous = manta("nodes", "--broker", url, "--tls-ca", str(site.pki.ca()))
    assert anonymous.returncode == 1 and "Traceback" not in anonymous.stderr
    assert "wants a client certificate" in anonymous.stderr
