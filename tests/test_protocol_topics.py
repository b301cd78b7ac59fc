"""Topic layout of protocol v2: builders, filters and the validating parser."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.topics import ROOT, Kind, Topic, TopicError

SHA = "0123456789abcdef" * 4
SHA2 = "f" * 64

_ALNUM = string.ascii_letters + string.digits
valid_ids = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "_-", max_size=63))
valid_shas = st.text("0123456789abcdef", min_size=64, max_size=64)
indices = st.integers(min_value=0, max_value=999_999_999)

# "." too: a level separator to NATS and RabbitMQ, so ids have refused it since protocol v2
BAD_IDS = [
    "a/b", "/a", "a/", "+", "a+b", "#", "a#", "", "x" * 65, "n\u00f6de", "\u8282\u70b9", "a b", "-leading-dash",
    "_leading_underscore", ".hidden", "a.b", "Node_1.edge-2", "n1.", "a\x00b", "a\tb",
]  # fmt: skip

BAD_SHAS = [
    "", "a" * 63, "a" * 65, SHA.upper(), "A" + SHA[1:], "g" * 64, "0x" + "a" * 62, " " + "a" * 63,
    "a" * 32 + "/" + "a" * 31, "+", "#",
]  # fmt: skip


# --- builders round-trip through parse ---------------------------------------------------------


def test_ids_at_bounds_are_accepted():
    """A 1-char and a 64-char id are both legal topic levels."""
    assert topics.check_id("a") == "a"
    assert topics.check_id("x" * 64) == "x" * 64
    assert topics.check_id("Node_1-edge_2") == "Node_1-edge_2"


@given(node=valid_ids)
def test_node_status_round_trips(node):
    """nodes/{node}/status parses back to NODE_STATUS with the same node id."""
    topic = topics.node_status(node)
    assert topic == f"{ROOT}/nodes/{node}/status"
    assert topics.parse(topic) == Topic(Kind.NODE_STATUS, node=node)


@given(node=valid_ids)
def test_node_log_round_trips(node):
    topic = topics.node_log(node)
    assert topic == f"{ROOT}/nodes/{node}/log"
    assert topics.parse(topic) == Topic(Kind.NODE_LOG, node=node)


@given(swarm=valid_ids)
def test_swarm_control_round_trips(swarm):
    topic = topics.swarm_control(swarm)
    assert topic == f"{ROOT}/swarms/{swarm}/control"
    assert topics.parse(topic) == Topic(Kind.SWARM_CONTROL, swarm=swarm)


@given(swarm=valid_ids)
def test_swarm_state_round_trips(swarm):
    """swarms/{swarm}/state parses back to SWARM_STATE with the same swarm id."""
    topic = topics.swarm_state(swarm)
    assert topic == f"{ROOT}/swarms/{swarm}/state"
    assert topics.parse(topic) == Topic(Kind.SWARM_STATE, swarm=swarm)


@given(swarm=valid_ids, node=valid_ids)
def test_blob_request_round_trips(swarm, node):
    """swarms/{swarm}/want/{node} parses back to BLOB_REQUEST with both ids."""
    topic = topics.blob_request(swarm, node)
    assert topic == f"{ROOT}/swarms/{swarm}/want/{node}"
    assert topics.parse(topic) == Topic(Kind.BLOB_REQUEST, swarm=swarm, node=node)


@given(swarm=valid_ids, sha=valid_shas, index=indices)
def test_blob_chunk_round_trips(swarm, sha, index):
    """swarms/{swarm}/blobs/{sha}/{i} parses back to BLOB_CHUNK with swarm, sha and index."""
    topic = topics.blob_chunk(swarm, sha, index)
    assert topic == f"{ROOT}/swarms/{swarm}/blobs/{sha}/{index}"
    assert topics.parse(topic) == Topic(Kind.BLOB_CHUNK, swarm=swarm, sha=sha, index=index)


@given(swarm=valid_ids, node=valid_ids)
def test_assignment_round_trips(swarm, node):
    """swarms/{swarm}/assign/{node} parses back to ASSIGNMENT with both ids."""
    topic = topics.assignment(swarm, node)
    assert topic == f"{ROOT}/swarms/{swarm}/assign/{node}"
    assert topics.parse(topic) == Topic(Kind.ASSIGNMENT, swarm=swarm, node=node)


@given(swarm=valid_ids, node=valid_ids)
def test_results_round_trips(swarm, node):
    """swarms/{swarm}/results/{node} parses back to RESULTS with both ids."""
    topic = topics.results(swarm, node)
    assert topic == f"{ROOT}/swarms/{swarm}/results/{node}"
    assert topics.parse(topic) == Topic(Kind.RESULTS, swarm=swarm, node=node)


@given(swarm=valid_ids, node=valid_ids, sha=valid_shas, index=indices)
def test_upload_chunk_round_trips(swarm, node, sha, index):
    """swarms/{swarm}/uploads/{node}/{sha}/{i} parses back to UPLOAD_CHUNK with every id."""
    topic = topics.upload_chunk(swarm, node, sha, index)
    assert topic == f"{ROOT}/swarms/{swarm}/uploads/{node}/{sha}/{index}"
    assert topics.parse(topic) == Topic(Kind.UPLOAD_CHUNK, swarm=swarm, node=node, sha=sha, index=index)


def test_chunk_index_zero_and_nine_digits():
    """Index 0 and the largest 9-digit index are accepted by both builder and parser."""
    for index in (0, 999_999_999):
        assert topics.parse(topics.blob_chunk("s", SHA, index)).index == index
        assert topics.parse(topics.upload_chunk("s", "n", SHA, index)).index == index


def test_subscription_filters():
    """The filters put wildcards only where the layout expects them, under the v2 root."""
    assert topics.all_node_status() == f"{ROOT}/nodes/+/status"
    assert topics.all_swarm_states() == f"{ROOT}/swarms/+/state"
    assert topics.my_assignments("n1") == f"{ROOT}/swarms/+/assign/n1"
    assert topics.swarm_results("s1") == f"{ROOT}/swarms/s1/results/+"
    assert topics.swarm_uploads("s1") == f"{ROOT}/swarms/s1/uploads/#"
    assert topics.blob_chunks("s1", SHA) == f"{ROOT}/swarms/s1/blobs/{SHA}/+"
    assert topics.swarm_blob_requests("s1") == f"{ROOT}/swarms/s1/want/+"
    assert topics.everything() == f"{ROOT}/#"


@pytest.mark.parametrize("bad", BAD_IDS)
def test_filters_reject_bad_ids(bad):
    """Filters that embed an id refuse one that could widen the subscription."""
    for build in (topics.my_assignments, topics.swarm_results, topics.swarm_uploads, topics.swarm_blob_requests):
        with pytest.raises(TopicError):
            build(bad)


# --- invalid ids and shas ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS)
def test_check_id_rejects(bad):
    """check_id refuses slashes, wildcards, empty, over-long, non-ASCII and odd leading chars."""
    with pytest.raises(TopicError):
        topics.check_id(bad)


@pytest.mark.parametrize("bad", [None, 5, b"node", ["a"]])
def test_check_id_rejects_non_strings(bad):
    """Non-string ids raise TopicError, not TypeError."""
    with pytest.raises(TopicError):
        topics.check_id(bad)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_builders_reject_bad_ids(bad):
    """Every builder refuses an invalid id in each id position."""
    builders = [
        lambda: topics.node_status(bad),
        lambda: topics.swarm_state(bad),
        lambda: topics.blob_request(bad, "n"),
        lambda: topics.blob_request("s", bad),
        lambda: topics.blob_chunk(bad, SHA, 0),
        lambda: topics.blob_chunks(bad, SHA),
        lambda: topics.assignment(bad, "n"),
        lambda: topics.assignment("s", bad),
        lambda: topics.results(bad, "n"),
        lambda: topics.results("s", bad),
        lambda: topics.upload_chunk(bad, "n", SHA, 0),
        lambda: topics.upload_chunk("s", bad, SHA, 0),
    ]
    for build in builders:
        with pytest.raises(TopicError):
            build()


def _topics_with_id(bad: str) -> list[str]:
    return [
        f"{ROOT}/nodes/{bad}/status",
        f"{ROOT}/swarms/{bad}/state",
        f"{ROOT}/swarms/{bad}/want/n",
        f"{ROOT}/swarms/s/want/{bad}",
        f"{ROOT}/swarms/{bad}/blobs/{SHA}/0",
        f"{ROOT}/swarms/{bad}/assign/n",
        f"{ROOT}/swarms/s/assign/{bad}",
        f"{ROOT}/swarms/{bad}/results/n",
        f"{ROOT}/swarms/s/results/{bad}",
        f"{ROOT}/swarms/{bad}/uploads/n/{SHA}/0",
        f"{ROOT}/swarms/s/uploads/{bad}/{SHA}/0",
    ]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_parse_rejects_bad_ids(bad):
    """parse refuses a topic whose id level is invalid, in each id position."""
    for topic in _topics_with_id(bad):
        with pytest.raises(TopicError):
            topics.parse(topic)


@given(bad=st.text(min_size=1, max_size=80).filter(lambda s: "/" not in s))
def test_parse_agrees_with_check_id(bad):
    """For any single-level string, parse accepts it as a node id exactly when check_id does."""
    try:
        topics.check_id(bad)
    except TopicError:
        with pytest.raises(TopicError):
            topics.parse(f"{ROOT}/nodes/{bad}/status")
    else:
        assert topics.parse(f"{ROOT}/nodes/{bad}/status").node == bad


@pytest.mark.parametrize("bad", BAD_SHAS)
def test_shas_must_be_64_lowercase_hex(bad):
    """check_sha, the sha builders and parse all refuse anything but 64 lowercase hex digits."""
    with pytest.raises(TopicError):
        topics.check_sha(bad)
    for build in (
        lambda: topics.blob_chunks("s", bad),
        lambda: topics.blob_chunk("s", bad, 0),
        lambda: topics.upload_chunk("s", "n", bad, 0),
    ):
        with pytest.raises(TopicError):
            build()
    if "/" not in bad:
        for topic in (
            f"{ROOT}/swarms/s/blobs/{bad}/0",
            f"{ROOT}/swarms/s/uploads/n/{bad}/0",
        ):
            with pytest.raises(TopicError):
                topics.parse(topic)


@pytest.mark.parametrize("bad", [None, 0, b"a" * 64])
def test_check_sha_rejects_non_strings(bad):
    """Non-string shas raise TopicError, not TypeError."""
    with pytest.raises(TopicError):
        topics.check_sha(bad)


@pytest.mark.parametrize(
    "check",
    [
        lambda: topics.check_id("node\n"),
        lambda: topics.check_sha(SHA + "\n"),
        lambda: topics.node_status("node\n"),
        lambda: topics.parse(f"{ROOT}/nodes/node\n/status"),
        lambda: topics.parse(f"{ROOT}/swarms/s/blobs/{SHA}\n/0"),
    ],
    ids=["check_id", "check_sha", "builder", "parse_id", "parse_sha"],
)
def test_trailing_newline_is_rejected(check):
    """An id or sha with a trailing newline is not a valid topic level."""
    with pytest.raises(TopicError):
        check()


# --- unknown layouts and chunk indices ---------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "manta",
        "manta/v2",
        "manta/v2/",
        "manta/v1/nodes/n/status",
        "manta/v1/discover",
        "Manta/v2/nodes/n/status",
        "other/v2/nodes/n/status",
        "/manta/v2/nodes/n/status",
        "$SYS/broker/uptime",
        "nodes/n/status",
        f"{ROOT}/nodes/n",
        f"{ROOT}/nodes/n/state",
        f"{ROOT}/nodes/n/status/extra",
        f"{ROOT}/nodes/n/status/",
        f"{ROOT}/nodes//status",
        f"{ROOT}/swarms/s",
        f"{ROOT}/swarms/s/status",
        f"{ROOT}/swarms/s/blobs",
        f"{ROOT}/swarms/s/blobs/{SHA}",
        f"{ROOT}/swarms/s/blobs/{SHA}/+",
        f"{ROOT}/swarms/s/blobs/{SHA}/0/1",
        f"{ROOT}/swarms/s/want",
        f"{ROOT}/swarms/s/want/+",
        f"{ROOT}/swarms/s/want/n/x",
        f"{ROOT}/discover/n",
        f"{ROOT}/nodes/n/discover",
        f"{ROOT}/swarms/s/assign",
        f"{ROOT}/swarms/s/assign/n/x",
        f"{ROOT}/swarms/s/results",
        f"{ROOT}/swarms/s/uploads/n/{SHA}",
        f"{ROOT}/swarms/s/uploads/n",
        f"{ROOT}/swarms/s/unknown/n",
        f"{ROOT}/things/s/state",
        f"{ROOT}//swarms/s/state",
        f"{ROOT}/#",
        f"{ROOT}/nodes/+/status",
        f"{ROOT}/swarms/+/state",
        f"{ROOT}/swarms/s/results/+",
        f"{ROOT}/swarms/s/uploads/#",
    ],
)
def test_unknown_layouts_and_other_roots(topic):
    """Anything that is not exactly one of the v2 layouts (filters included) raises TopicError:
    v1 topics too, and the v1 blob meta topic, gone in v2."""
    with pytest.raises(TopicError):
        topics.parse(topic)


@given(topic=st.text(max_size=200))
def test_parse_raises_only_topic_error(topic):
    """Random text either parses or raises TopicError, nothing else."""
    try:
        parsed = topics.parse(topic)
    except TopicError:
        return
    assert isinstance(parsed, Topic)


@pytest.mark.parametrize(
    "index",
    ["", "-1", "+1", "1.0", "1e3", "0x1", "a", " 1", "1 ", "1_000", "1000000000", "9" * 20],
)
def test_chunk_index_must_be_digits(index):
    """A chunk index level must be 1-9 ASCII digits in both blob and upload chunk topics."""
    for topic in (
        f"{ROOT}/swarms/s/blobs/{SHA2}/{index}",
        f"{ROOT}/swarms/s/uploads/n/{SHA2}/{index}",
    ):
        with pytest.raises(TopicError):
            topics.parse(topic)


@pytest.mark.parametrize("index", ["\u0663", "\u00b2", "\uff11"], ids=["arabic-indic", "superscript", "fullwidth"])
def test_chunk_index_rejects_non_ascii_digits(index):
    """Unicode digits are not ASCII digits: parse must raise TopicError for them."""
    with pytest.raises(TopicError):
        topics.parse(f"{ROOT}/swarms/s/blobs/{SHA2}/{index}")


@pytest.mark.parametrize("index", [-1, 1_000_000_000])
def test_chunk_builders_reject_out_of_range_index(index):
    """Builders must not produce a chunk topic that the parser would refuse."""
    with pytest.raises(TopicError):
        topics.blob_chunk("s", SHA, index)
