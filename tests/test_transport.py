"""The transport over real brokers: version negotiation, the publish window, blobs published once
and fetched chunk by chunk (also by a late joiner), uploads, and the broker's packet limit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.transport.blobs import BlobFetcher, BlobPublisher, UploadReceiver, chunk_size_for, upload
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .conftest import BrokerUnderTest, mosquitto_binary

KIB = 1024


def link(broker: BrokerUnderTest, name: str, version: str | None = None) -> MqttLink:
    client = MqttLink(name, BrokerAddress.parse(broker.url), version=version or broker.version, session_expiry=0)
    assert client.start(), f"{name} could not connect to {broker.name}"
    return client


def test_broker_url_parsing() -> None:
    address = BrokerAddress.parse("mqtts://user:p%40ss@broker.local")
    assert (address.host, address.port, address.username, address.password, address.tls) == (
        "broker.local",
        8883,
        "user",
        "p@ss",
        True,
    )
    assert BrokerAddress.parse("10.0.0.5:1884").port == 1884
    with pytest.raises(ValueError):
        BrokerAddress.parse("http://x")


def test_auto_version_speaks_5_to_mosquitto(mosquitto: BrokerUnderTest) -> None:
    client = link(mosquitto, "auto5", version="auto")
    assert client.protocol == "5"
    assert client.max_packet == 8388608  # from broker_config/mosquitto-dev.conf, via CONNACK
    client.stop()


def test_links_turn_nagles_algorithm_off(broker: BrokerUnderTest) -> None:
    """paho leaves Nagle on: a small packet (a SUBSCRIBE, a PUBACK, a grant) would wait for the ACK of
    the one before it, up to the peer's delayed ACK (~40 ms on Linux)."""
    client = link(broker, "nodelay")
    sock = client._paho.socket()
    assert sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    client.stop()


@pytest.mark.parametrize("name", ["mosquitto-dev.conf", "mosquitto-pi.conf"])
def test_the_shipped_broker_configs_turn_nagles_algorithm_off(name: str) -> None:
    """Mosquitto's default leaves Nagle on toward clients: a retained message right after its SUBACK
    waited for the client's delayed ACK, ~40 ms on every blob fetch (the dev config runs the tests
    and the benchmarks, the site config the fleet)."""
    lines = (Path(__file__).resolve().parents[1] / "broker_config" / name).read_text().splitlines()
    assert "set_tcp_nodelay true" in [line.strip() for line in lines]


def test_auto_version_falls_back_to_311_on_amqtt(amqtt_broker: BrokerUnderTest) -> None:
    client = link(amqtt_broker, "auto3", version="auto")
    assert client.protocol == "3.1.1"
    client.stop()


def test_unreachable_broker_returns_false_quickly() -> None:
    client = MqttLink("nobody", BrokerAddress.parse("mqtt://127.0.0.1:9"), version="auto")
    started = time.monotonic()
    assert client.start(timeout=2) is False
    assert time.monotonic() - started < 5


def test_publish_window_bounds_unacknowledged_messages(broker: BrokerUnderTest) -> None:
    """Many QoS 1 publishes in a row never leave more than `window` unacknowledged."""
    got: list[str] = []
    sub = link(broker, "win-sub")
    sub.route("win/#", lambda t, p, r: got.append(t))
    sub.subscribe("win/#")
    pub = link(broker, "win-pub")
    peak = 0
    for i in range(300):
        pub.publish(f"win/{i}", b"x" * 2000)
        peak = max(peak, len(pub._pending))
    assert pub.flush(20)
    assert peak <= pub.window
    deadline = time.monotonic() + 20
    while len(got) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(got) == 300
    pub.stop()
    sub.stop()


def test_blob_published_once_fetched_in_chunks_and_by_a_late_joiner(broker: BrokerUnderTest, tmp_path: Path) -> None:
    data = os.urandom(300 * KIB + 17)
    coordinator = link(broker, "coord")
    publisher = BlobPublisher(coordinator, "swarm-a", chunk_size=64 * KIB)
    sha = publisher.publish(data)
    assert publisher.publish(data) == sha and len(publisher.published) == 1  # not sent again

    node = link(broker, "node-a")
    fetcher = BlobFetcher(node, BlobStore(tmp_path / "a"), window=2)
    assert fetcher.fetch("swarm-a", [sha], timeout=20) == []
    assert fetcher.store.get(sha) == data

    late = link(broker, "node-late")  # joins after the publish: retained chunks still serve it
    late_fetcher = BlobFetcher(late, BlobStore(tmp_path / "b"))
    assert late_fetcher.fetch("swarm-a", [sha], timeout=20) == []
    assert late_fetcher.store.get(sha) == data

    publisher.clear(sha)
    assert coordinator.flush(10)
    cleared = link(broker, "node-after-clear")
    assert BlobFetcher(cleared, BlobStore(tmp_path / "c")).fetch("swarm-a", [sha], timeout=1.5) == [sha]
    for client in (coordinator, node, late, cleared):
        client.stop()


def test_small_blob_travels_inline_and_cache_hits_skip_the_network(
    amqtt_broker: BrokerUnderTest, tmp_path: Path
) -> None:
    coordinator = link(amqtt_broker, "coord-s")
    sha = BlobPublisher(coordinator, "swarm-s").publish(b"hyperparameters")
    node = link(amqtt_broker, "node-s")
    store = BlobStore(tmp_path)
    fetcher = BlobFetcher(node, store)
    assert fetcher.fetch("swarm-s", [sha], timeout=10) == []
    coordinator.stop()  # nothing left to serve it, but the cache has it
    started = time.monotonic()
    assert fetcher.fetch("swarm-s", [sha], timeout=10) == []
    assert time.monotonic() - started < 0.5
    node.stop()


def test_uploads_are_reassembled_and_verified(broker: BrokerUnderTest, tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    rejected: list[str] = []
    receiver = UploadReceiver(store, on_reject=lambda reason, detail: rejected.append(reason))
    done = threading.Event()
    coordinator = link(broker, "coord-u")

    def on_upload(topic: str, payload: bytes, retained: bool) -> None:
        parsed = topics.parse(topic)
        assert parsed.node and parsed.sha and parsed.index is not None
        if receiver.receive(parsed.node, parsed.sha, parsed.index, payload):
            done.set()

    coordinator.route(topics.swarm_uploads("swarm-u"), on_upload)
    coordinator.subscribe(topics.swarm_uploads("swarm-u"))
    node = link(broker, "node-u")
    data = os.urandom(200 * KIB)
    ref = upload(node, "swarm-u", "node-u", data, chunk_size=32 * KIB)
    assert done.wait(20)
    assert store.get(ref.sha) == data and ref.size == len(data) and rejected == []
    node.stop()
    coordinator.stop()


def test_chunks_shrink_below_the_brokers_packet_limit(tmp_path: Path) -> None:
    """With max_packet_size 100000, a 1 MiB chunk setting becomes smaller chunks that fit."""
    server = MosquittoProcess(tmp_path / "m", extra="max_packet_size 100000\n", binary=mosquitto_binary()).start()
    try:
        broker = BrokerUnderTest("mosquitto", server.url, "5", server.port)
        coordinator = link(broker, "coord-p")
        assert coordinator.max_packet == 100000
        assert chunk_size_for(coordinator, 1 << 20) < 100000
        data = os.urandom(600 * KIB)
        sha = BlobPublisher(coordinator, "swarm-p", chunk_size=1 << 20).publish(data)
        node = link(broker, "node-p")
        fetcher = BlobFetcher(node, BlobStore(tmp_path / "s"))
        assert fetcher.fetch("swarm-p", [sha], timeout=20) == []
        assert fetcher.store.get(sha) == data
        node.stop()
        coordinator.stop()
    finally:
        server.stop()


def test_receivers_count_into_the_counter_they_are_given(tmp_path: Path) -> None:
    """Regression: an empty counter was falsy, so ``on_reject or Rejections(log)`` replaced it
    and upload rejections never reached the coordinator's (or a node's) counts."""
    counter = Rejections(logging.getLogger("test"))
    receiver = UploadReceiver(BlobStore(tmp_path / "blobs"), on_reject=counter)
    receiver.receive("n1", "ab" * 32, 0, b"garbage")
    assert counter.as_dict() == {"malformed": 1}
