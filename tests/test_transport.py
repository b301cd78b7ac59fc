"""The transport over real brokers: version negotiation, the publish window, blobs served chunk by
chunk as nodes ask for them (also to a late joiner, to many nodes at once, again when a chunk is
lost), uploads, and the broker's packet limit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.blob_server import BlobServer
from manta_mqtt.transport.blobs import UploadReceiver, chunk_size_for, upload
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


def serve(broker: BrokerUnderTest, swarm: str, chunk_size: int = 64 * KIB, **options: Any) -> BlobServer:
    """A coordinator's blob server on a link of its own, started and listening for requests."""
    server = BlobServer(link(broker, f"coord-{swarm}"), swarm, chunk_size, **options).start()
    assert server.link.subscribe(server.filters, wait=10)
    return server


def stop(server: BlobServer, *others: MqttLink) -> None:
    server.stop()
    for client in (server.link, *others):
        client.stop()


def test_blobs_are_served_when_asked_and_fetched_by_a_late_joiner(broker: BrokerUnderTest, tmp_path: Path) -> None:
    """0 bytes, one chunk, many chunks: nothing is published before a node asks, each chunk once
    per fetch, nothing retained, so a node joining later is served the same way."""
    server = serve(broker, "swarm-a")
    blobs = [b"", os.urandom(1000), os.urandom(300 * KIB + 17)]  # 1, 1 and 5 chunks
    shas = [server.offer(data) for data in blobs]
    assert server.offer(blobs[2]) == shas[2] and server.offers(shas[2])
    assert server.chunks_sent == 0  # offered, not published

    node = link(broker, "node-a")
    fetcher = BlobFetcher(node, BlobStore(tmp_path / "a"), "node-a", window=2, retry=30)
    assert fetcher.fetch("swarm-a", shas, timeout=20) == []
    assert [fetcher.store.get(sha) for sha in shas] == blobs
    assert server.chunks_sent == 7  # window 2: the rest asked for as chunks came, none twice

    late = link(broker, "node-late")
    late_fetcher = BlobFetcher(late, BlobStore(tmp_path / "b"), "node-late")
    assert late_fetcher.fetch("swarm-a", [shas[2]], timeout=20) == []
    assert late_fetcher.store.get(shas[2]) == blobs[2]
    assert server.chunks_sent == 12
    stop(server, node, late)


def test_a_one_chunk_blob_is_one_request_and_cache_hits_skip_the_network(
    amqtt_broker: BrokerUnderTest, tmp_path: Path
) -> None:
    server = serve(amqtt_broker, "swarm-s")
    sha = server.offer(b"hyperparameters")
    node = link(amqtt_broker, "node-s")
    fetcher = BlobFetcher(node, BlobStore(tmp_path), "node-s")
    assert fetcher.fetch("swarm-s", [sha], timeout=10) == []
    assert (fetcher.requests_sent, server.chunks_sent) == (1, 1)  # chunk 0 is the whole blob
    stop(server)  # nothing left to serve it, but the cache has it
    started = time.monotonic()
    assert fetcher.fetch("swarm-s", [sha], timeout=10) == []
    assert time.monotonic() - started < 0.5 and fetcher.requests_sent == 1
    node.stop()


def test_nodes_fetching_the_same_blob_at_once_share_its_chunks(broker: BrokerUnderTest, tmp_path: Path) -> None:
    """Every fetcher gets every chunk published for any of them, and a chunk asked for by many
    while it waits in the server's queue is published once."""
    server = serve(broker, "swarm-m", chunk_size=4 * KIB)
    data = os.urandom(64 * 4 * KIB - 100)  # 64 chunks
    sha = server.offer(data)
    nodes = [link(broker, f"node-m{i}") for i in range(8)]
    fetchers = [BlobFetcher(n, BlobStore(tmp_path / n.client_id), n.client_id) for n in nodes]
    start = threading.Barrier(len(fetchers))
    failed: list[list[str]] = []

    def fetch(fetcher: BlobFetcher) -> None:
        start.wait()
        failed.append(fetcher.fetch("swarm-m", [sha], timeout=60))

    threads = [threading.Thread(target=fetch, args=(f,)) for f in fetchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert failed == [[]] * len(fetchers)
    assert all(f.store.get(sha) == data for f in fetchers)
    # 8 x 64 without coalescing; 108-124 measured: a request that reaches the server after its
    # chunk left the queue (the chunk on its way to the asker) gets it published again
    print(f"{server.chunks_sent} chunks published for {len(fetchers)} fetchers of 64")
    assert 64 <= server.chunks_sent <= len(fetchers) * 64 // 2, server.chunks_sent
    stop(server, *nodes)


def test_a_blob_not_on_offer_is_refused_and_the_fetch_times_out(broker: BrokerUnderTest, tmp_path: Path) -> None:
    rejected: list[str] = []
    server = serve(broker, "swarm-x", on_reject=lambda reason, _detail: rejected.append(reason))
    offered = server.offer(b"kept")
    gone = server.offer(b"replaced by a later iteration")
    server.withdraw_all_except({offered})
    assert not server.offers(gone) and server.offers(offered)
    node = link(broker, "node-x")
    fetcher = BlobFetcher(node, BlobStore(tmp_path), "node-x", retry=0.5)
    started = time.monotonic()
    assert fetcher.fetch("swarm-x", [gone, "ef" * 32], timeout=2.0) == [gone, "ef" * 32]
    assert 2.0 <= time.monotonic() - started < 5
    assert server.chunks_sent == 0 and rejected and set(rejected) == {"unexpected"}
    assert len(rejected) >= 4  # asked again after each half second of silence
    stop(server, node)


def test_a_lost_chunk_is_asked_for_again(
    broker: BrokerUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks travel at QoS 0 and a broker may fail over: after ``retry`` s without news the
    fetcher asks again for what is missing."""
    server = serve(broker, "swarm-l", chunk_size=4 * KIB)
    data = os.urandom(6 * 4 * KIB)
    sha = server.offer(data)
    lost, publish = topics.blob_chunk("swarm-l", sha, 2), server.link.publish
    dropped: list[str] = []

    def lossy(topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if topic == lost and not dropped:
            dropped.append(topic)  # the first copy of chunk 2 never reaches the broker
            return
        publish(topic, payload, qos, retain)

    monkeypatch.setattr(server.link, "publish", lossy)
    node = link(broker, "node-l")
    fetcher = BlobFetcher(node, BlobStore(tmp_path), "node-l", window=8, retry=0.5)
    started = time.monotonic()
    assert fetcher.fetch("swarm-l", [sha], timeout=20) == []
    assert fetcher.store.get(sha) == data and dropped == [lost]
    assert time.monotonic() - started >= 0.5
    assert server.chunks_sent == 7 and fetcher.requests_sent == 2  # all 6, then chunk 2 again
    stop(server, node)


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
    mosquitto = MosquittoProcess(tmp_path / "m", extra="max_packet_size 100000\n", binary=mosquitto_binary()).start()
    try:
        broker = BrokerUnderTest("mosquitto", mosquitto.url, "5", mosquitto.port)
        server = serve(broker, "swarm-p", chunk_size=1 << 20)
        assert server.link.max_packet == 100000
        assert chunk_size_for(server.link, 1 << 20) < 100000
        data = os.urandom(600 * KIB)
        sha = server.offer(data)
        node = link(broker, "node-p")
        fetcher = BlobFetcher(node, BlobStore(tmp_path / "s"), "node-p")
        assert fetcher.fetch("swarm-p", [sha], timeout=20) == []
        assert fetcher.store.get(sha) == data
        assert server.chunks_sent > 600 * KIB // 100000  # smaller chunks than asked for, more of them
        stop(server, node)
    finally:
        mosquitto.stop()


def test_receivers_count_into_the_counter_they_are_given(tmp_path: Path) -> None:
    """Regression: an empty counter was falsy, so ``on_reject or Rejections(log)`` replaced it
    and upload rejections never reached the coordinator's (or a node's) counts."""
    counter = Rejections(logging.getLogger("test"))
    receiver = UploadReceiver(BlobStore(tmp_path / "blobs"), on_reject=counter)
    receiver.receive("n1", "ab" * 32, 0, b"garbage")
    assert counter.as_dict() == {"malformed": 1}
