"""The site's PKI tools against the real things: openssl-free certificates that verify, password
hashes the real Mosquitto accepts, a revocation list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509

from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.pki import issue, make_ca, mosquitto_hash, new_password, revocation_list, write_private
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import mosquitto_binary


def test_certificates_chain_to_the_ca_and_name_their_holder() -> None:
    ca = make_ca("site CA")
    node = issue(ca, "pi-kitchen")
    broker = issue(ca, "broker", server_names=["broker.local", "10.0.0.5"])
    node.cert.verify_directly_issued_by(ca.cert)
    broker.cert.verify_directly_issued_by(ca.cert)
    assert node.cert.subject.rfc4514_string() == "CN=pi-kitchen"
    names = broker.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.local"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises InvalidSignature or ValueError
        node.cert.verify_directly_issued_by(make_ca("another CA").cert)


def test_a_revocation_list_names_the_revoked_serials() -> None:
    ca = make_ca("site CA")
    gone, kept = issue(ca, "n1"), issue(ca, "n2")
    crl = x509.load_pem_x509_crl(revocation_list(ca, [gone.serial]))
    assert crl.get_revoked_certificate_by_serial_number(gone.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial) is None
    assert crl.is_signature_valid(ca.key.public_key())


def test_secrets_are_written_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "sub" / "key.pem", b"secret")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "sub" / "key.pem").st_mode & 0o777 == 0o600
    assert len(new_password()) >= 32


def test_the_real_mosquitto_accepts_our_password_hashes(tmp_path: Path) -> None:
    password = new_password()
    password_file = tmp_path / "passwd"
    password_file.write_text(f"n1:{mosquitto_hash(password)}\n")
    extra = f"allow_anonymous false\npassword_file {password_file}\n"
    server = MosquittoProcess(tmp_path / "mosquitto", extra=extra, binary=mosquitto_binary()).start()
    try:
        good = MqttLink("n1", BrokerAddress.parse(server.url).with_credentials("n1", password), session_expiry=0)
        assert good.start(timeout=5)
        good.stop()
        bad = MqttLink("n1", BrokerAddress.parse(server.url).with_credentials("n1", password + "x"), session_expiry=0)
        assert not bad.start(timeout=5)
    finally:
        server.stop()
