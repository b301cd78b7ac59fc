"""Signed code: a node runs only assignments its swarm's owner signed for it.

The attack this stops: anyone who could publish on the broker (no ACL, or a stolen password)
made every node run their Python. Now an assignment must carry an Ed25519 signature, by a key
the node's config trusts, over every field and the node's own id.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest

from edge_node.agent import EdgeAgent
from edge_node.config import ConfigError, NodeConfig
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import Assignment, CodeRef, ProtocolError, ResultEnvelope, Signature
from manta_mqtt.protocol.signing import OwnerKey, Trust, Untrusted, parse_public, public_text
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import BrokerUnderTest

SHA = "ab" * 32


def assignment(**changes: object) -> Assignment:
    base = Assignment("sw", 3, "worker", 0, CodeRef(SHA, "worker"), {"model": "cd" * 32}, ["a.npz"], 300)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def owner() -> OwnerKey:
    return OwnerKey.generate()


def test_a_signed_assignment_survives_the_wire_and_verifies(owner: OwnerKey) -> None:
    signed = owner.sign("n1", assignment())
    received = Assignment.parse(signed.to_bytes())
    assert received == signed and received.signature is not None
    Trust([owner.public]).check("n1", received)  # no exception


@pytest.mark.parametrize(
    "field",
    [
        {"swarm": "other"},
        {"iteration": 4},
        {"task": "aggregator"},
        {"attempt": 1},
        {"code": CodeRef("ef" * 32, "worker")},
        {"code": CodeRef(SHA, "other")},
        {"global_refs": {"model": "ef" * 32}},
        {"datasets": ["b.npz"]},
        {"timeout": 301.0},
    ],
)
def test_changing_any_field_breaks_the_signature(owner: OwnerKey, field: dict[str, object]) -> None:
    """The code, the globals, the step and the limits are all covered: none can be swapped."""
    signed = owner.sign("n1", assignment())
    tampered = Assignment.parse(dataclasses.replace(signed, **field).to_bytes())  # type: ignore[arg-type]
    with pytest.raises(Untrusted, match="does not match"):
        Trust([owner.public]).check("n1", tampered)


def test_a_signature_for_one_node_does_not_work_for_another(owner: OwnerKey) -> None:
    signed = Assignment.parse(owner.sign("n1", assignment()).to_bytes())
    with pytest.raises(Untrusted, match="does not match"):
        Trust([owner.public]).check("n2", signed)


def test_an_integer_timeout_signs_and_verifies(owner: OwnerKey) -> None:
    """Task timeouts are often written as ints; the node reads a float: same signed bytes."""
    signed = owner.sign("n1", assignment(timeout=300))
    Trust([owner.public]).check("n1", Assignment.parse(signed.to_bytes()))


def test_unsigned_and_unknown_keys_are_refused_unless_the_node_opts_out(owner: OwnerKey) -> None:
    stranger = OwnerKey.generate()
    unsigned, foreign = assignment(), stranger.sign("n1", assignment())
    trust = Trust([owner.public])
    with pytest.raises(Untrusted, match="not signed"):
        trust.check("n1", unsigned)
    with pytest.raises(Untrusted, match=f"key {stranger.id}, which this node does not trust"):
        trust.check("n1", foreign)
    with pytest.raises(Untrusted, match="not signed"):
        Trust([]).check("n1", unsigned)  # a node that trusts nobody runs nothing
    local = Trust([owner.public], allow_unsigned=True)
    local.check("n1", unsigned)
    local.check("n1", foreign)
    forged = dataclasses.replace(owner.sign("n1", assignment()), attempt=7)
    with pytest.raises(Untrusted, match="does not match"):
        local.check("n1", forged)  # a bad signature by a trusted key is never run


def test_signature_fields_are_validated_on_the_wire() -> None:
    good = Signature("0123456789abcdef", b"\x00" * 64)
    with pytest.raises(ProtocolError):
        Assignment.parse(dataclasses.replace(assignment(), signature=Signature("XYZ", good.ed25519)).to_bytes())
    with pytest.raises(ProtocolError):
        Assignment.parse(dataclasses.replace(assignment(), signature=Signature(good.key, b"\x00" * 63)).to_bytes())


def test_keys_round_trip_through_files(tmp_path: Path, owner: OwnerKey) -> None:
    public = owner.save(tmp_path / "owner.key")
    assert os.stat(tmp_path / "owner.key").st_mode & 0o777 == 0o600
    assert OwnerKey.load(tmp_path / "owner.key").id == owner.id
    assert public.read_text().strip() == public_text(owner.public)
    assert parse_public(public.read_text()).public_bytes_raw() == owner.public.public_bytes_raw()
    with pytest.raises(FileExistsError):
        owner.save(tmp_path / "owner.key")
    for bad in ["", "rsa:AAAA", "ed25519:***", "ed25519:" + "A" * 8]:
        with pytest.raises(ValueError):
            parse_public(bad)
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(ValueError, match="not an unencrypted PEM"):
        OwnerKey.load(tmp_path / "junk.key")


def test_node_config_trust_table(tmp_path: Path, owner: OwnerKey) -> None:
    (tmp_path / "owner.pub").write_text(public_text(owner.public) + "\n")
    base = {"node": {"id": "n1"}}
    assert NodeConfig.from_dict(base, tmp_path).trust.keys == {}  # by default: runs nothing
    config = NodeConfig.from_dict(base | {"trust": {"key_files": ["owner.pub"]}}, tmp_path)
    assert list(config.trust.keys) == [owner.id] and not config.trust.allow_unsigned
    config = NodeConfig.from_dict(base | {"trust": {"keys": [public_text(owner.public)]}}, tmp_path)
    assert list(config.trust.keys) == [owner.id]
    assert NodeConfig.from_dict(base | {"trust": {"allow_unsigned": True}}, tmp_path).trust.allow_unsigned
    for bad in [{"keys": ["ed25519:nope"]}, {"key_files": ["missing.pub"]}, {"allow_unsigned": "yes"}]:
        with pytest.raises(ConfigError, match="trust"):
            NodeConfig.from_dict(base | {"trust": bad}, tmp_path)


def test_a_node_refuses_forged_work_over_a_real_broker(
    amqtt_broker: BrokerUnderTest, tmp_path: Path, owner: OwnerKey
) -> None:
    """Forged (unsigned, foreign-signed, tampered) assignments are refused before anything is
    fetched, reported as failed runs with the reason and counted; a signed one is taken."""
    address = BrokerAddress.parse(amqtt_broker.url)
    config = NodeConfig("n1", address, tmp_path, mqtt_version="3.1.1", trust=Trust([owner.public]))
    agent, stop = EdgeAgent(config), threading.Event()
    envelopes: list[ResultEnvelope] = []
    coordinator = MqttLink("coord", address, version="3.1.1", session_expiry=0)
    coordinator.route(topics.swarm_results("sw"), lambda t, p, r: envelopes.append(ResultEnvelope.parse(p)))
    assert coordinator.start() and coordinator.subscribe(topics.swarm_results("sw"), wait=5)
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent-main")
    runner.start()
    work = [
        assignment(attempt=1),  # unsigned
        OwnerKey.generate().sign("n1", assignment(attempt=2)),  # a stranger's key
        dataclasses.replace(owner.sign("n1", assignment(attempt=3)), code=CodeRef("ef" * 32, "evil")),
        owner.sign("n2", assignment(attempt=4)),  # signed for another node
        owner.sign("n1", dataclasses.replace(assignment(attempt=5), timeout=1.0)),  # the real thing
    ]
    try:
        time.sleep(0.5)  # connected and subscribed
        for a in work:
            coordinator.publish(topics.assignment("sw", "n1"), a.to_bytes())
        deadline = time.monotonic() + 30
        while len(envelopes) < len(work) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30)
        coordinator.stop()
    errors = {e.attempt: e.error for e in envelopes}
    assert errors[1].startswith("refused: the assignment is not signed")
    assert "which this node does not trust" in errors[2]
    assert "does not match" in errors[3] and "does not match" in errors[4]
    assert "could not fetch" in errors[5]  # trusted: it went on to fetch its (missing) code
    assert agent.reject.as_dict().get("untrusted") == 4
    assert not (tmp_path / "work").exists()  # no refused task ever started
