"""Moving a large value through a broker: chunked blob (offered by a BlobServer -> asked for and
fetched a window of chunks at a time -> verified on disk) versus one raw MQTT publish of the same
bytes, side by side, on Mosquitto and amqtt.

    python bench/bench_transfer.py [--sizes 1,4,16,64] [--repeat 3]

Raw publishes above the broker's max_packet_size (8 MiB in broker_config) are not possible,
which is the point of chunking; those rows report the chunked numbers alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from _common import median_seconds, write

from manta_mqtt import BrokerAddress
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.blob_server import BlobServer
from manta_mqtt.transport.broker import EmbeddedBroker
from manta_mqtt.transport.mqtt import MqttLink

MIB = 1024 * 1024
RAW_LIMIT = 8 * MIB - 4096


def measure(url: str, version: str, sizes: list[int], repeat: int, tmp: Path) -> list[dict[str, Any]]:
    address = BrokerAddress.parse(url)
    pub = MqttLink("bench-pub", address, version=version, session_expiry=0)
    sub = MqttLink("bench-sub", address, version=version, session_expiry=0)
    got = threading.Event()
    sub.route("bench/raw", lambda t, p, r: got.set())
    assert pub.start() and sub.start()
    sub.subscribe("bench/raw", wait=10)
    server = BlobServer(pub, "bench", chunk_size=MIB).start()
    assert pub.subscribe(server.filters, wait=10)
    fetcher = BlobFetcher(sub, BlobStore(tmp / "first"), "bench-sub")
    rows = []
    for size_mib in sizes:
        data = os.urandom(size_mib * MIB)
        runs = iter(range(10**6))

        def chunked(data: bytes = data, runs: Any = runs) -> None:
            store = fetcher.store = BlobStore(tmp / f"{len(data)}-{next(runs)}")  # a cold cache each time
            sha = server.offer(data)
            failed = fetcher.fetch("bench", [sha], timeout=300)
            assert not failed and store.get(sha) == data
            server.withdraw_all_except(set())

        def raw(data: bytes = data) -> None:
            got.clear()
            pub.publish("bench/raw", data)
            assert got.wait(300)

        chunked_s = median_seconds(chunked, repeat)
        row: dict[str, Any] = {
            "size_mib": size_mib,
            "chunked_s": round(chunked_s, 4),
            "chunked_mib_s": round(size_mib / chunked_s, 1),
        }
        if size_mib * MIB <= RAW_LIMIT:
            raw_s = median_seconds(raw, repeat)
            row |= {"raw_s": round(raw_s, 4), "chunked_over_raw": round(chunked_s / raw_s, 2)}
        print(row)
        rows.append(row)
    server.stop()
    pub.stop()
    sub.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        with MosquittoProcess(Path(tmp) / "mosquitto") as mosquitto:
            print(f"mosquitto (MQTT 5) on {mosquitto.url}")
            rows = measure(mosquitto.url, "5", sizes, args.repeat, Path(tmp))
            results += [{"broker": "mosquitto", **row} for row in rows]
        with EmbeddedBroker(port=0) as amqtt:
            print(f"amqtt (MQTT 3.1.1) on {amqtt.url}")
            rows = measure(amqtt.url, "3.1.1", sizes, args.repeat, Path(tmp))
            results += [{"broker": "amqtt", **row} for row in rows]
    write("transfer", results, repeat=args.repeat, chunk_mib=1)


if __name__ == "__main__":
    main()
