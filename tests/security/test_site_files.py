"""`manta-mqtt site` without a broker: what it writes, what it refuses, and what it never shows.

The broker side (the bundle running on a real Mosquitto, kits connecting or refused) is
tests/security/test_site.py.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from edge_node.config import NodeConfig
from manta_mqtt.cli.main import cli
from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import SITE_ACL, SITE_CONFIG
from manta_mqtt.tools.site import Site

SECRETS = re.compile(r"\.key$|\.password$|^manta\.passwd$|^site\.json$")


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["site", *args, "--site", str(root)])


def ok(root: Path, *args: str) -> str:
    result = run(root, *args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(root: Path, *args: str) -> str:
    result = run(root, *args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "manta-site"
    ok(root, "init", "--broker-name", "broker.local", "--broker-name", "10.0.0.5")
    yield root


def test_init_refuses_to_overwrite_a_site(site: Path) -> None:
    key = (site / "ca" / "ca.key").read_bytes()
    assert "not overwriting a site" in refused(site, "init", "--broker-name", "other.local")
    assert (site / "ca" / "ca.key").read_bytes() == key
    assert Site.open(site).broker_names == ["broker.local", "10.0.0.5"]


def secret_files(root: Path) -> dict[Path, str]:
    return {p: p.read_text() for p in root.rglob("*") if p.is_file() and SECRETS.search(p.name)}


def test_secrets_are_private_and_never_printed(tmp_path: Path) -> None:
    root = tmp_path / "manta-site"
    commands = [["init", "--broker-name", "broker.local"], ["add-node", "pi-kitchen"], ["add-node", "pi-garage"],
                ["rotate-node", "pi-garage"], ["remove-node", "pi-kitchen"], ["list"]]  # fmt: skip
    outputs, secrets = "", set()
    old = os.umask(0)  # whatever the operator's umask
    try:
        for command in commands:
            outputs += ok(root, *command)
            secrets |= {
                text for p, text in secret_files(root).items() if p.name != "site.json"
            }  # keys since replaced too
    finally:
        os.umask(old)
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, path
        else:  # keys, passwords, the state: private; certificates and configs: public
            assert mode == (0o600 if SECRETS.search(path.name) else 0o644), path
    names = {p.name for p in root.rglob("*")}
    assert {"ca.key", "operators-ca.key", "owner.key", "broker.key", "manta.passwd", "local.password"} <= names
    assert {"coordinator.key", "monitor.key", "pi-garage.key"} <= names and len(secrets) >= 11
    for secret in secrets:  # neither a key's body nor a password appears in any output
        body = [line for line in secret.splitlines() if line and not line.startswith("-----")]
        assert body and not any(line in outputs for line in body)


def test_the_bundle_is_the_shipped_config_plus_a_crl_and_the_enrolled_nodes(site: Path) -> None:
    ok(site, "add-node", "pi-kitchen")
    ok(site, "add-node", "pi-garage")
    conf = (site / "broker" / "conf.d" / "manta.conf").read_text()
    added = [line for line in conf.splitlines() if line not in SITE_CONFIG.read_text().splitlines()]
    assert [a for a in added if not a.startswith("#")] == ["crlfile /etc/mosquitto/ca/crl.pem"]
    fleet = conf[conf.index("listener 8883") : conf.index("listener 8884")]
    assert "crlfile /etc/mosquitto/ca/crl.pem" in fleet  # the fleet listener's, not the operators'
    kept = [line for line in conf.splitlines() if line not in added]
    assert kept == SITE_CONFIG.read_text().splitlines()  # the rest, verbatim and in order
    acl = (site / "broker" / "manta.acl").read_text()
    assert SITE_ACL.read_text() in acl
    block = r"^user (\S+)\ntopic read manta/v2/swarms/\+/state\ntopic read manta/v2/swarms/\+/blobs/#"
    blocks = re.findall(block + r"\ntopic read manta/v2/discover$", acl, re.M)
    assert blocks == ["pi-garage", "pi-kitchen"]
    passwd = (site / "broker" / "manta.passwd").read_text()
    assert re.fullmatch(r"monitor:\$7\$101\$\S+\$\S+\n", passwd)


def test_revoked_serials_are_in_the_crl_until_the_ca_expires(site: Path) -> None:
    ok(site, "add-node", "pi-kitchen")
    ok(site, "add-node", "pi-garage")
    first = Site.open(site).nodes
    ok(site, "remove-node", "pi-kitchen")
    ok(site, "rotate-node", "pi-garage")
    crl = x509.load_pem_x509_crl((site / "broker" / "ca" / "crl.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((site / "ca" / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert sorted(r.serial_number for r in crl) == sorted(e.serial for e in first.values())
    current = Site.open(site).nodes["pi-garage"].serial
    assert current != first["pi-garage"].serial and crl.get_revoked_certificate_by_serial_number(current) is None
    assert crl.next_update_utc == ca.not_valid_after_utc  # an expired CRL would lock every node out
    assert "user pi-kitchen" not in (site / "broker" / "manta.acl").read_text()
    assert not (site / "nodes" / "pi-kitchen").exists() and (site / "nodes" / "pi-garage" / "node.toml").exists()


def test_a_node_kit_is_a_valid_node_config(site: Path) -> None:
    ok(site, "add-node", "pi-kitchen", "--url", "mqtts://10.0.0.5:8883")
    kit = site / "nodes" / "pi-kitchen"
    config = NodeConfig.load(kit / "node.toml")
    assert config.node_id == "pi-kitchen" and str(config.broker) == "mqtts://10.0.0.5:8883"
    tls = config.broker.tls_files
    assert tls is not None and (tls.ca, tls.cert, tls.key) == (
        kit / "ca.crt",
        kit / "pi-kitchen.crt",
        kit / "pi-kitchen.key",
    )
    owner = OwnerKey.load(site / "owner.key")
    assert list(config.trust.keys) == [owner.id] and not config.trust.allow_unsigned
    cert = x509.load_pem_x509_certificate((kit / "pi-kitchen.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=pi-kitchen"
    site_ca = x509.load_pem_x509_certificate((site / "ca" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(site_ca)
    assert (kit / "ca.crt").read_bytes() == (site / "ca" / "ca.crt").read_bytes()


@pytest.mark.parametrize(
    "node_id, why",
    [
        ("..", "invalid node id"),  # the kit's folder would be the site's parent
        (".hidden", "invalid node id"),
        ("a/b", "invalid node id"),
        ("pi+", "invalid node id"),
        ("", "invalid node id"),
        ("coordinator", "an operator's name"),
        ("monitor", "an operator's name"),
    ],
)
def test_unsafe_node_ids_are_refused(site: Path, node_id: str, why: str) -> None:
    assert why in refused(site, "add-node", node_id)
    assert list((site / "nodes").iterdir()) == [] and Site.open(site).nodes == {}


def test_what_add_remove_and_rotate_refuse(site: Path) -> None:
    ok(site, "add-node", "pi-kitchen")
    assert "already enrolled" in refused(site, "add-node", "pi-kitchen")
    assert "no node 'pi-nope' in this site (enrolled: pi-kitchen)" in refused(site, "remove-node", "pi-nope")
    assert "no node 'pi-nope'" in refused(site, "rotate-node", "pi-nope")
    assert "must be mqtts://" in refused(site, "add-node", "pi-2", "--url", "mqtt://broker.local:1883")
    assert "not a name in the broker's certificate" in refused(site, "add-node", "pi-2", "--url", "mqtts://pi.lan:8883")
    assert "is not a site" in refused(site.parent / "elsewhere", "list")
    assert "invalid broker name" in refused(site.parent / "s2", "init", "--broker-name", "bad name")
    assert Site.open(site).revoked == []


def test_list_shows_each_node_serial_and_expiry(site: Path) -> None:
    ok(site, "add-node", "pi-kitchen")
    ok(site, "add-node", "pi-garage")
    ok(site, "remove-node", "pi-garage")
    listed = ok(site, "list")
    cert = x509.load_pem_x509_certificate((site / "nodes" / "pi-kitchen" / "pi-kitchen.crt").read_bytes())
    row = next(line for line in listed.splitlines() if line.startswith("pi-kitchen"))
    assert row.split() == ["pi-kitchen", f"{cert.serial_number:x}", str(cert.not_valid_after_utc.date()),
                           "mqtts://broker.local:8883"]  # fmt: skip
    assert "pi-garage" not in listed and "1 nodes; 1 certificates revoked" in listed and "expires soon" not in listed
    state = json.loads((site / "site.json").read_text())
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=29)
    state["nodes"]["pi-kitchen"]["expires"] = soon.isoformat()
    (site / "site.json").write_text(json.dumps(state))
    assert "(expires soon: manta-mqtt site rotate-node)" in ok(site, "list")


def test_an_ipv6_broker_name_makes_a_working_default_url(tmp_path: Path) -> None:
    root = tmp_path / "manta-site"
    ok(root, "init", "--broker-name", "fd00:0::5", "--broker-name", "broker.local")
    broker = x509.load_pem_x509_certificate((root / "broker" / "certs" / "broker.crt").read_bytes())
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["fd00::5"]
    ok(root, "add-node", "pi-kitchen")
    config = NodeConfig.load(root / "nodes" / "pi-kitchen" / "node.toml")
    assert (config.broker.host, config.broker.port) == ("fd00::5", 8883)


def test_a_damaged_state_file_is_an_error_not_a_traceback(site: Path) -> None:
    (site / "site.json").write_text('{"broker_names": ["broker.local"]}')
    assert "cannot read" in refused(site, "list") and "nodes" in refused(site, "add-node", "pi-kitchen")


def test_the_brokers_certificate_passes_strict_rfc_5280_verification(site: Path) -> None:
    """What Python 3.13's default TLS context asks (VERIFY_X509_STRICT: key identifiers and all), for each name."""
    ca = x509.load_pem_x509_certificate((site / "ca" / "ca.crt").read_bytes())
    broker = x509.load_pem_x509_certificate((site / "broker" / "certs" / "broker.crt").read_bytes())
    for name in (x509.DNSName("broker.local"), x509.IPAddress(ipaddress.ip_address("10.0.0.5"))):
        chain = PolicyBuilder().store(Store([ca])).build_server_verifier(name).verify(broker, [])
        assert chain == [broker, ca]
