"""What TLS costs a transfer: the same blob (offered -> asked for and fetched -> verified on disk)
through one Mosquitto on a plaintext listener and on a TLS listener with client certificates,
interleaved runs, medians and their ratio.

    python bench/bench_tls.py [--size-mib 10] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write

from manta_mqtt import BrokerAddress
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.tools.mosquitto import MosquittoProcess, free_port
from manta_mqtt.tools.pki import issue, make_ca, write_private
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.blob_server import BlobServer
from manta_mqtt.transport.mqtt import MqttLink
from manta_mqtt.transport.tls import TlsFiles

MIB = 1024 * 1024


def certificates(folder: Path) -> tuple[TlsFiles, str]:
    """A throwaway CA, the broker's certificate and a client's; the broker's TLS lines."""
    ca = make_ca("bench CA")
    broker, client = issue(ca, "broker", server_names=["127.0.0.1"]), issue(ca, "bench")
    (folder / "ca.crt").write_bytes(ca.cert_pem())
    for name, who in (("broker", broker), ("client", client)):
        (folder / f"{name}.crt").write_bytes(who.cert_pem())
        write_private(folder / f"{name}.key", who.key_pem())
    lines = (
        f"cafile {folder}/ca.crt\ncertfile {folder}/broker.crt\nkeyfile {folder}/broker.key\nrequire_certificate true\n"
    )
    return TlsFiles(folder / "ca.crt", folder / "client.crt", folder / "client.key"), lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = os.urandom(args.size_mib * MIB)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files, tls_lines = certificates(tmp)
        plain_port, tls_port = free_port(), free_port()
        config = (
            "per_listener_settings false\nallow_anonymous true\nmax_packet_size 8388608\n"
            "max_queued_messages 20000\nmax_queued_bytes 536870912\n"
            f"listener {plain_port} 127.0.0.1\nlistener {tls_port} 127.0.0.1\n{tls_lines}"
        )
        if os.geteuid() == 0:
            config += "user root\n"
        with MosquittoProcess(tmp / "mosquitto", config=config, ports=[plain_port, tls_port]):
            addresses = {
                "plaintext": BrokerAddress.parse(f"mqtt://127.0.0.1:{plain_port}"),
                "tls": BrokerAddress.parse(f"mqtts://127.0.0.1:{tls_port}").with_tls(files),
            }
            links = {}
            for name, address in addresses.items():
                pub = MqttLink(f"pub-{name}", address, version="5", session_expiry=0)
                sub = MqttLink(f"sub-{name}", address, version="5", session_expiry=0)
                assert pub.start() and sub.start(), f"cannot connect over {name}"
                # a swarm each: both servers share the broker, and would answer each other's nodes
                server = BlobServer(pub, f"bench-{name}", chunk_size=MIB).start()
                assert pub.subscribe(server.filters, wait=10), f"cannot subscribe over {name}"
                links[name] = (server, BlobFetcher(sub, BlobStore(tmp / "x"), f"sub-{name}"))
            times: dict[str, list[float]] = {name: [] for name in links}
            for run in range(args.repeat + 1):  # the first round warms up and is not counted
                for name, (server, fetcher) in links.items():
                    fetcher.store = BlobStore(tmp / f"{name}-{run}")
                    started = time.perf_counter()
                    sha = server.offer(data)
                    assert not fetcher.fetch(server.swarm, [sha], timeout=300)
                    elapsed = time.perf_counter() - started
                    server.withdraw_all_except(set())
                    if run:
                        times[name].append(elapsed)
            for server, fetcher in links.values():
                server.stop()
                server.link.stop()
                fetcher.link.stop()
    medians = {name: statistics.median(values) for name, values in times.items()}
    row: dict[str, Any] = {"size_mib": args.size_mib, "repeat": args.repeat}
    for name, median in medians.items():
        row[f"{name}_s"] = round(median, 4)
        row[f"{name}_mib_s"] = round(args.size_mib / median, 1)
    row["tls_over_plaintext"] = round(medians["tls"] / medians["plaintext"], 2)
    print(row)
    write("tls", [row])


if __name__ == "__main__":
    main()
