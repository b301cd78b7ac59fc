"""The raw paho floor of a federated round: what moving the model costs with nothing on top.

One retained publish of the model (in 1 MiB messages, as the broker's 8 MiB packet limit
requires, QoS 1) fanned out to N subscribers; each subscriber, once it holds the whole model,
uploads the same bytes to one collector (at most 64 MiB of uploads in flight at once, well under
the broker's queue limit). The floor is the time from the first publish to the collector holding all
N copies. Same broker, same bytes as the no-op FedAvg round it is the
floor of (bench_round.py). All clients live in this one process (the nodes of a real round are
N processes), so on a small machine the floor is if anything slower than a spread-out one.

    python bench/bench_floor.py [--nodes 4] [--mib 1]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from manta_mqtt.tools.mosquitto import MosquittoProcess

MIB = 1 << 20
CHUNK = MIB
#: Upload chunks on their way to the collector at once: past the broker's max_queued_bytes
#: (512 MiB in mosquitto-dev.conf) Mosquitto drops QoS 1 messages, so the floor, like any
#: uploader, must not outrun its one receiver. 256 was not enough: at 16 x 100 MiB Mosquitto
#: still logged "Outgoing messages are being dropped" for the collector and the floor never
#: ended. 64 MiB keeps loopback busy (our own window is 32 MiB).
WINDOW_CHUNKS = 64


def _client(name: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)  # unbounded: paho queues what the inflight window holds back
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    return client


def _wait_subscribed(client: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(topic, qos=1)
    if not done.wait(10):
        raise TimeoutError(f"no SUBACK for {topic}")


def _counter(
    client: mqtt.Client, expected: int, on_done: threading.Event, window: threading.Semaphore | None = None
) -> None:
    """Counts the messages ``client`` receives; at ``expected``: sets ``on_done``. Each message
    received gives one place back to ``window``, if any."""
    got = [0]

    def on_message(_client: mqtt.Client, _userdata: object, _message: mqtt.MQTTMessage) -> None:
        got[0] += 1
        if window is not None:
            window.release()
        if got[0] == expected:
            on_done.set()

    client.on_message = on_message


def floor_seconds(port: int, nodes: int, model_bytes: int, tag: str = "floor") -> float:
    """One fan-out of ``model_bytes`` to ``nodes`` subscribers, then their ``nodes`` uploads."""
    chunks = [bytes([i % 251]) * min(CHUNK, model_bytes - i * CHUNK) for i in range(-(-model_bytes // CHUNK))]
    coordinator = _client(f"{tag}-coordinator", port)
    collected = threading.Event()
    window = threading.Semaphore(WINDOW_CHUNKS)
    _counter(coordinator, nodes * len(chunks), collected, window)
    _wait_subscribed(coordinator, f"{tag}/up/#")
    subscribers = []
    ready = []
    for n in range(nodes):
        client = _client(f"{tag}-node{n}", port)
        has_model = threading.Event()
        _counter(client, len(chunks), has_model)
        _wait_subscribed(client, f"{tag}/model/#")
        subscribers.append(client)
        ready.append(has_model)

    def upload(n: int) -> None:
        ready[n].wait()
        for i, chunk in enumerate(chunks):
            window.acquire()
            subscribers[n].publish(f"{tag}/up/node{n}/{i}", chunk, qos=1)

    uploaders = [threading.Thread(target=upload, args=(n,), daemon=True) for n in range(nodes)]
    for thread in uploaders:
        thread.start()
    started = time.perf_counter()
    for i, chunk in enumerate(chunks):
        coordinator.publish(f"{tag}/model/{i}", chunk, qos=1, retain=True)
    if not collected.wait(600):
        raise TimeoutError("the floor's uploads did not all arrive")
    elapsed = time.perf_counter() - started
    for i in range(len(chunks)):  # clear the retained model
        coordinator.publish(f"{tag}/model/{i}", b"", qos=1, retain=True).wait_for_publish(10)
    for client in [coordinator, *subscribers]:
        client.loop_stop()
        client.disconnect()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--mib", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mosquitto") as broker:
        seconds = floor_seconds(broker.port, args.nodes, args.mib * MIB)
    print({"nodes": args.nodes, "mib": args.mib, "floor_s": round(seconds, 4)})


if __name__ == "__main__":
    main()
