"""What protocol v2 added or changed, parsed strictly: ``BlobRequest`` (a node asks for a window of
a blob's chunks, on ``want/{node}``), ``Discover`` (every node: publish your status, on
``discover``), NodeStatus's ``link`` and ``server``, and ids without ``.`` (NATS and RabbitMQ
read it as a level separator)."""

from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from manta_mqtt.protocol import codec, topics
from manta_mqtt.protocol.limits import MAX_CHUNK_INDEX
from manta_mqtt.protocol.messages import BlobRequest, Discover, NodeStatus, ProtocolError, ResultEnvelope
from manta_mqtt.protocol.topics import ROOT, Kind, Topic, TopicError

SHA = "ab" * 32
REQUEST = {"v": 2, "swarm": "s1", "node": "n1", "sha": SHA, "first": 8, "count": 4}
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ids = st.builds(str.__add__, st.sampled_from(ALNUM), st.text(ALNUM + "_-", max_size=63))


def request(**change: object) -> bytes:
    return msgpack.packb(REQUEST | change)


# --- BlobRequest -------------------------------------------------------------------------------


def test_a_blob_request_round_trips_and_names_its_chunks() -> None:
    asked = BlobRequest("s1", "n1", SHA, 8, 4)
    assert codec.decode(asked.to_bytes()) == REQUEST
    assert BlobRequest.parse(asked.to_bytes()) == asked == BlobRequest.parse(request())
    assert list(asked.indexes) == [8, 9, 10, 11]


def test_a_blob_request_reaches_the_last_chunk_index_and_no_further() -> None:
    """The node need not know the blob's chunk count, but no request names an index no chunk may have."""
    last = MAX_CHUNK_INDEX
    assert list(BlobRequest.parse(request(first=last, count=1)).indexes) == [last]
    assert BlobRequest.parse(request(first=0, count=last + 1)).count == last + 1
    for first, count in [(last, 2), (0, last + 2), (last + 1, 1), (2**62, 2**62)]:
        with pytest.raises(ProtocolError, match="out of range"):
            BlobRequest.parse(request(first=first, count=count))


@pytest.mark.parametrize(
    "change",
    [
        {"v": 1}, {"v": 3}, {"v": True}, {"v": "2"},
        {"count": 0}, {"count": -1}, {"count": 1.0}, {"count": True}, {"count": "4"},
        {"first": -1}, {"first": 8.0}, {"first": False}, {"first": None},
        {"swarm": "a/b"}, {"swarm": "s.1"}, {"swarm": "+"}, {"swarm": ""}, {"swarm": 1},
        {"node": "n.1"}, {"node": "#"}, {"node": "x" * 65}, {"node": "-n"}, {"node": b"n1"},
        {"sha": SHA.upper()}, {"sha": SHA[:-1]}, {"sha": "g" * 64}, {"sha": SHA.encode()}, {"sha": None},
    ],
    ids=repr,
)  # fmt: skip
def test_a_blob_request_that_is_not_exactly_v2_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        BlobRequest.parse(request(**change))


@pytest.mark.parametrize("missing", sorted(REQUEST))
def test_every_field_of_a_blob_request_is_required(missing: str) -> None:
    with pytest.raises(ProtocolError):
        BlobRequest.parse(msgpack.packb({k: v for k, v in REQUEST.items() if k != missing}))


def test_a_blob_request_is_msgpack_and_nothing_else() -> None:
    for payload in (json.dumps(REQUEST).encode(), b"", msgpack.packb([REQUEST]), request()[:-1]):
        with pytest.raises(ProtocolError):
            BlobRequest.parse(payload)


# --- Discover ----------------------------------------------------------------------------------


def test_discover_is_small_readable_json() -> None:
    payload = Discover("coordinator-s1").to_bytes()
    assert json.loads(payload) == {"v": 2, "from": "coordinator-s1"}
    assert Discover.parse(payload) == Discover("coordinator-s1")
    assert Discover.parse(b'{"v": 2}') == Discover("")  # who asks is for people watching; optional
    assert Discover.parse(json.dumps({"v": 2, "from": "x" * 300}).encode()).sender == "x" * 255


def test_discover_is_at_most_1024_bytes() -> None:
    """Refused by its length, before any JSON is read: a flood of huge requests costs nodes nothing."""
    head = b'{"v": 2, "from": "'
    largest = head + b"x" * (1024 - len(head) - 2) + b'"}'
    assert len(largest) == 1024 and Discover.parse(largest).sender == "x" * 255
    for payload in (largest[:-2] + b'x"}', b" " * 1025 + b'{"v": 2}', b"[" * 100_000):
        with pytest.raises(ProtocolError, match="at most 1024"):
            Discover.parse(payload)


@pytest.mark.parametrize(
    "payload",
    [b'{"v": 1, "from": "x"}', b'{"v": 3}', b'{"from": "x"}', b'{"v": true}', b'{"v": "2"}', b'{"v": 2, "from": 5}',
     b'{"v": 2, "from": null}', b"[]", b"", b"{", b"\xff", msgpack.packb({"v": 2, "from": "x"})],
    ids=repr,
)  # fmt: skip
def test_a_discover_that_is_not_exactly_v2_is_refused(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        Discover.parse(payload)


# --- NodeStatus: which connection, to which server -----------------------------------------------


def test_a_status_says_which_connection_of_the_session_and_which_server() -> None:
    status = NodeStatus("n1", "online", session=5, link=3, server="[::1]:1883")
    data = json.loads(status.to_bytes())
    assert (data["link"], data["server"]) == (3, "[::1]:1883")
    assert NodeStatus.parse(status.to_bytes()) == status
    minimal = NodeStatus.parse(b'{"v": 2, "node": "n1", "state": "online"}')
    assert (minimal.link, minimal.server) == (0, "")
    long = json.dumps(data | {"server": "h" * 300}).encode()
    assert NodeStatus.parse(long).server == "h" * 255
    for change in ({"link": -1}, {"link": "3"}, {"link": True}, {"link": 1.5}, {"server": 1883}, {"server": None}):
        with pytest.raises(ProtocolError):
            NodeStatus.parse(json.dumps(data | change).encode())


# --- topics ------------------------------------------------------------------------------------


@given(swarm=ids, node=ids)
def test_a_nodes_requests_go_on_want_and_reach_the_swarms_server(swarm: str, node: str) -> None:
    topic = topics.blob_request(swarm, node)
    assert topic == f"{ROOT}/swarms/{swarm}/want/{node}"
    assert topics.parse(topic) == Topic(Kind.BLOB_REQUEST, swarm=swarm, node=node)
    assert topic_matches_sub(topics.swarm_blob_requests(swarm), topic)
    assert not topic_matches_sub(topics.swarm_blob_requests(swarm + "x"), topic)


@given(swarm=ids, index=st.integers(0, MAX_CHUNK_INDEX))
def test_one_subscription_per_blob_gets_every_chunk_of_it_and_no_other(swarm: str, index: int) -> None:
    topic = topics.blob_chunk(swarm, SHA, index)
    assert topics.blob_chunks(swarm, SHA) == f"{ROOT}/swarms/{swarm}/blobs/{SHA}/+"
    assert topic_matches_sub(topics.blob_chunks(swarm, SHA), topic)
    assert not topic_matches_sub(topics.blob_chunks(swarm, "cd" * 32), topic)


def test_discover_is_one_topic_for_the_whole_site() -> None:
    assert topics.discover() == "manta/v2/discover" and ROOT == "manta/v2"
    assert topics.parse(topics.discover()) == Topic(Kind.DISCOVER)
    assert topic_matches_sub(topics.everything(), topics.discover())
    for bad in ("manta/v1/discover", f"{ROOT}/discover/n1", f"{ROOT}/swarms/s/discover", f"{ROOT}/discover/"):
        with pytest.raises(TopicError):
            topics.parse(bad)


def test_want_topics_carry_exactly_a_swarm_and_a_node() -> None:
    for bad in ("want", "want/+", "want/#", "want/n.1", "want/n1/x", "want/", f"want/n1/{SHA}"):
        with pytest.raises(TopicError):
            topics.parse(f"{ROOT}/swarms/s1/{bad}")
    with pytest.raises(TopicError):
        topics.parse(f"{ROOT}/swarms/s.1/want/n1")


# --- ids without '.' ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a.b", "node.1", "swarm.v1", "n1.", "Node_1.edge-2", "..", "a..b"])
def test_ids_with_a_dot_are_refused_everywhere(bad: str) -> None:
    """v1 allowed them; NATS refused every subscription to a topic holding one, so v2 does not."""
    with pytest.raises(TopicError):
        topics.check_id(bad)
    for build in (
        lambda: topics.node_status(bad),
        lambda: topics.blob_request(bad, "n1"),
        lambda: topics.blob_request("s1", bad),
        lambda: topics.blob_chunks(bad, SHA),
        lambda: topics.assignment("s1", bad),
    ):
        with pytest.raises(TopicError):
            build()
    for topic in (f"{ROOT}/nodes/{bad}/status", f"{ROOT}/swarms/s1/want/{bad}", f"{ROOT}/swarms/{bad}/state"):
        with pytest.raises(TopicError):
            topics.parse(topic)
    with pytest.raises(ProtocolError):
        NodeStatus.parse(json.dumps({"v": 2, "node": bad, "state": "online"}).encode())
    with pytest.raises(ProtocolError):
        BlobRequest.parse(request(node=bad))
    with pytest.raises(ProtocolError):
        ResultEnvelope.parse(codec.encode({"v": 2, "swarm": bad, "iteration": 0, "task": "t", "node": "n1",
                                           "status": "ok"}))  # fmt: skip


@given(text=st.text(ALNUM + "_-.", min_size=1, max_size=64))
def test_an_id_is_valid_exactly_when_it_has_no_dot_and_starts_with_a_letter_or_digit(text: str) -> None:
    valid = "." not in text and text[0] in ALNUM
    try:
        topics.check_id(text)
    except TopicError:
        assert not valid
    else:
        assert valid
