"""Subscriptions on a real broker: a refused one is seen (SUBACK codes), and a fetch releases
every subscription it made, so a persistent session never piles them up (NATS refuses past a
limit, and every broker keeps them for as long as the session lives)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import MAX_AWAITED_SUBACKS
from manta_mqtt.tools.nats import NatsServer, find_nats_server
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.blob_server import BlobServer
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from manta_mqtt.transport.subscriptions import SubscriptionBook

from .conftest import BrokerUnderTest

KIB = 1024


def link(url: str, name: str, version: str) -> MqttLink:
    client = MqttLink(name, BrokerAddress.parse(url), version=version, session_expiry=0)
    assert client.start(), f"{name} could not connect"
    return client


def nats(workdir: Path, config: str = "") -> NatsServer:
    if find_nats_server() is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    server = NatsServer(workdir)
    server.conf.write_text(server.conf.read_text() + config)
    return server


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[NatsServer]:
    """A broker that refuses some subscriptions in its SUBACK: NATS refuses a topic holding a
    ``.`` (its own level separator), as it refuses any past a session's subscription limit.
    (Mosquitto's acl_file never refuses a subscription: it filters on delivery.)"""
    with nats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[NatsServer]:
    """NATS allowing 2 subscriptions per connection (a QoS 0 one costs one; a QoS 1 one, two).
    Protocol v2 ids hold no ``.``, so a fetch's filter is refused only past such a limit."""
    with nats(tmp_path / "nats", "max_subscriptions: 2\n") as server:
        yield server


def test_a_refused_subscription_is_seen_with_its_filter(refusing: NatsServer) -> None:
    client = link(refusing.url, "refused", "3.1.1")
    seen: list[tuple[list[str], str]] = []
    client.on_refused(lambda filters, reason: seen.append((filters, reason)))
    assert client.subscribe(["allowed/x"], wait=10)
    assert client.refusal == "" and client.subscriptions_refused == 0
    assert not client.subscribe(["allowed/y", "denied.z/w"], wait=10)
    assert "denied.z/w" in client.refusal and "allowed/y" not in client.refusal
    assert client.subscriptions_refused == 1
    assert [filters for filters, _ in seen] == [["denied.z/w"]]
    client.stop()


def test_a_fetch_the_broker_refuses_fails_at_once_with_the_reason(
    limited: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the SUBACK code, the fetch waited out its whole timeout and said "timed out"."""
    node = link(limited.url, "node", "3.1.1")
    assert node.subscribe([topics.my_assignments("node"), topics.all_swarm_states()], qos=0, wait=10)
    fetcher = BlobFetcher(node, BlobStore(tmp_path / "cache"), "node")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="manta_mqtt.blobs"):
        assert fetcher.fetch("swarm-v2", ["ab" * 32], timeout=120) == ["ab" * 32]
    assert time.monotonic() - started < 15 and fetcher.requests_sent == 0  # nothing asked for
    assert "refused the subscription" in caplog.text and "timed out" not in caplog.text
    assert topics.blob_chunks("swarm-v2", "ab" * 32) in node.refusal
    node.stop()


def test_a_fetch_leaves_no_subscription_behind(mosquitto: BrokerUnderTest, tmp_path: Path) -> None:
    """One filter per blob while it is fetched (fetched or not), released when the fetch ends:
    a blob of fewer chunks than the window, one of a single chunk, and one nobody offers."""
    coordinator = link(mosquitto.url, "coord", "5")
    server = BlobServer(coordinator, "swarm-a", chunk_size=64 * KIB).start()
    assert coordinator.subscribe(server.filters, wait=10)
    small = server.offer(os.urandom(3 * 64 * KIB - 5))  # 3 chunks
    tiny = server.offer(b"tiny")  # chunk 0 only
    node = link(mosquitto.url, "node", "5")
    before = node.subscriptions
    fetcher = BlobFetcher(node, BlobStore(tmp_path / "cache"), "node", window=8)
    assert fetcher.fetch("swarm-a", [small, tiny], timeout=20) == []
    assert node.subscriptions == before
    assert fetcher.fetch("swarm-a", ["ef" * 32], timeout=0.5) == ["ef" * 32]
    assert node.subscriptions == before
    server.stop()
    coordinator.stop()
    node.stop()


class Code:
    def __init__(self, failure: bool) -> None:
        self.is_failure = failure

    def __str__(self) -> str:
        return "Unspecified error" if self.is_failure else "Granted QoS 1"


def test_the_book_names_refused_filters_and_stays_bounded() -> None:
    book = SubscriptionBook()
    book.sent(1, ["a/+", "b.c/#"])
    assert book.answer(1) is None  # no SUBACK yet
    assert book.answered(1, [Code(False), Code(True)]) == (["b.c/#"], "b.c/# (Unspecified error)")
    assert book.refusal == "the broker refused the subscription to b.c/# (Unspecified error)"
    book.record(1, "b.c/# (Unspecified error)")
    assert book.answer(1) == "b.c/# (Unspecified error)" and book.answer(1) is None
    for mid in range(2, 3 * MAX_AWAITED_SUBACKS):  # never answered, never waited for
        book.sent(mid, ["x"])
        book.record(mid + 10**6, "")  # the answer to a request nobody waits for
    assert len(book._sent) == MAX_AWAITED_SUBACKS and len(book._answers) == MAX_AWAITED_SUBACKS


@pytest.mark.parametrize("version", ["5", "3.1.1"])
@pytest.mark.parametrize("end_session", [True, False])
def test_a_client_that_will_not_return_leaves_no_session(
    mosquitto: BrokerUnderTest, version: str, end_session: bool
) -> None:
    """A finished run's coordinator ends its session; any other stop keeps it for the return."""
    first = MqttLink("coordinator-run-1", BrokerAddress.parse(mosquitto.url), version=version)
    assert first.start()
    assert first.subscribe(["manta/v2/swarms/run-1/results/+"], wait=10)
    first.stop(end_session=end_session)
    again = MqttLink("coordinator-run-1", BrokerAddress.parse(mosquitto.url), version=version)
    assert again.start()
    assert again.session_present is not end_session
    again.stop(end_session=True)
