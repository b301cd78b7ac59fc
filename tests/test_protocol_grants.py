"""UploadGrant and its topic: built in one place, parsed strictly."""

from __future__ import annotations

import msgpack
import pytest

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import MAX_BLOB_BYTES, MIN_CHUNK_SIZE
from manta_mqtt.protocol.messages import ProtocolError, UploadGrant

SHA = "ab" * 32
GOOD = {"v": 2, "swarm": "s1", "node": "n1", "sha": SHA, "size": 10 * MIN_CHUNK_SIZE + 1,
        "chunk_size": MIN_CHUNK_SIZE, "first": 8, "count": 3}  # fmt: skip


def test_a_grant_round_trips() -> None:
    grant = UploadGrant("s1", "n1", SHA, 5000, 1024, 2, 3)
    assert UploadGrant.parse(grant.to_bytes()) == grant
    assert list(grant.indexes) == [2, 3, 4] and grant.info.count == 5


def test_the_grant_topic_is_one_level_per_id_and_parses_back() -> None:
    topic = topics.upload_grant("s1", "n1")
    assert topic == "manta/v2/swarms/s1/grants/n1"
    parsed = topics.parse(topic)
    assert (parsed.kind, parsed.swarm, parsed.node) == (topics.Kind.UPLOAD_GRANT, "s1", "n1")
    assert topics.my_grants("n1") == "manta/v2/swarms/+/grants/n1"
    for bad in ("n/1", "+", "#", "", "n.1"):
        with pytest.raises(topics.TopicError):
            topics.upload_grant("s1", bad)
    with pytest.raises(topics.TopicError):
        topics.parse("manta/v2/swarms/s1/grants/n1/extra")


@pytest.mark.parametrize(
    "change",
    [
        {"v": 1},
        {"v": 3},
        {"swarm": "a/b"},
        {"node": ""},
        {"node": "n.1"},
        {"sha": "AB" * 32},
        {"size": -1},
        {"size": MAX_BLOB_BYTES + 1},
        {"size": True},
        {"chunk_size": MIN_CHUNK_SIZE - 1},
        {"first": -1},
        {"count": 0},
        {"first": 9},  # 9 + 3 > 11 chunks
        {"count": 4},
        {"first": 1.0},
    ],
)
def test_a_grant_that_is_not_exactly_v2_is_refused(change: dict[str, object]) -> None:
    assert UploadGrant.parse(msgpack.packb(GOOD)).count == 3
    with pytest.raises(ProtocolError):
        UploadGrant.parse(msgpack.packb(GOOD | change))


@pytest.mark.parametrize("missing", sorted(set(GOOD) - {"v"}))
def test_every_field_is_required(missing: str) -> None:
    with pytest.raises(ProtocolError):
        UploadGrant.parse(msgpack.packb({k: v for k, v in GOOD.items() if k != missing}))
