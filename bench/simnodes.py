"""Simulated edge nodes: many real MQTT connections in one process, speaking protocol v2.

A load generator for bench_scale.py, not an agent: it runs no task process and checks no
signature, but everything on the wire is the real thing, built and parsed by
``manta_mqtt.protocol`` (topics, NodeStatus, Discover, Assignment, BlobRequest/Chunk,
ResultEnvelope):

- each node publishes a retained NodeStatus (will: offline), again as a heartbeat, "busy" while
  it works and "online" after, and again when a ``Discover`` asks (at most once a second); it
  subscribes to its assignments, to the swarms' state and to ``discover``;
- an assignment is parsed with ``Assignment.parse``; the blobs it refers to that this node does
  not have yet are fetched as the real fetcher does, minimally: one QoS 0 subscription per blob
  (``blob_chunks``), then, once the broker acknowledged it, ``BlobRequest``s for a window of
  ``FETCH_WINDOW`` chunks from 0, more as half of it came, the missing ones again after
  ``FETCH_RETRY_SECONDS`` without news; chunks are reassembled and sha256-checked by ``Assembler``;
- the answer is a real ResultEnvelope with an inline value: for a global ``model`` (the no-op
  FedAvg swarm) the model plus one, the same for every node (bench/swarms/noop_fedavg/worker.py
  adds an offset of each node's own; here the model is 1 KiB and travels inline, and the
  coordinator still records one result per node).

One thread drives every connection through paho's external-loop API (``loop_read``,
``loop_misc``; paho writes at once when no loop thread runs), so a process holds hundreds of
nodes. Blob bytes are kept once per process, keyed by sha256; each node still fetches each
blob itself, once.

    python bench/simnodes.py --broker mqtt://127.0.0.1:1883 --prefix sim --first 0 --count 250
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from manta_mqtt.protocol import codec, topics
from manta_mqtt.protocol.chunking import Assembler, ChunkError, DigestMismatch
from manta_mqtt.protocol.limits import (
    DISCOVER_MIN_INTERVAL_SECONDS,
    FETCH_RETRY_SECONDS,
    FETCH_WINDOW,
    MAX_BLOB_BYTES,
)
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobRequest,
    Chunk,
    Discover,
    NodeState,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmState,
)
from manta_mqtt.transport.address import BrokerAddress, server_name
from manta_mqtt.transport.blob_fetcher import Transfer, runs

AGENT = "manta-mqtt simnode"
HEARTBEAT = 30.0  # seconds, as the edge agent's default


@dataclass
class SimNode:
    node: str
    client: paho.Client
    session: int
    have: set[str] = field(default_factory=set)  # blobs this node fetched
    fetching: dict[str, Transfer] = field(default_factory=dict)
    waiting: list[Assignment] = field(default_factory=list)  # assignments until their blobs arrive
    answered: set[tuple[str, int, str, int]] = field(default_factory=set)
    subscribing: dict[int, list[str]] = field(default_factory=dict)  # SUBSCRIBE mid -> shas it is for
    next_heartbeat: float = 0.0
    announced: float = 0.0  # when the status last went out
    links: int = 0  # connections made (NodeStatus.link)


class Fleet:
    """``count`` simulated nodes named ``{prefix}{first + i}``, all in this process."""

    def __init__(self, address: BrokerAddress, prefix: str, first: int, count: int) -> None:
        self.address = address
        self.names = [f"{prefix}{first + i}" for i in range(count)]
        self.nodes: dict[str, SimNode] = {}
        self.blobs: dict[str, bytes] = {}  # sha -> bytes, once per process
        self.answers: dict[str, bytes] = {}  # model sha -> encoded result, once per process
        self.selector = selectors.DefaultSelector()
        self.stats = {"assignments": 0, "results": 0, "fetched": 0, "requests": 0, "states": 0, "malformed": 0}
        self.session = int(time.time() * 1000)

    # --- connections ------------------------------------------------------------------------

    def connect(self) -> None:
        for name in self.names:
            client = paho.Client(
                paho.CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv311, clean_session=True
            )
            node = SimNode(name, client, self.session)
            client.user_data_set(node)
            client.on_message = self._on_message
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            offline = self._status(node, "offline")
            client.will_set(topics.node_status(name), offline.to_bytes(), qos=1, retain=True)
            client.connect(self.address.host, self.address.port, keepalive=60)
            sock = client.socket()
            assert sock is not None
            self.selector.register(sock, selectors.EVENT_READ, client)
            self.nodes[name] = node

    def _on_connect(self, client: paho.Client, node: SimNode, _flags: Any, _rc: Any, _props: Any) -> None:
        node.links += 1
        client.subscribe(
            [(topics.my_assignments(node.node), 1), (topics.all_swarm_states(), 1), (topics.discover(), 1)]
        )
        self._announce(node, "online")

    def run(self, stop: list[bool]) -> None:
        """Drive every connection until ``stop[0]``; a heartbeat per node every HEARTBEAT s."""
        last_misc = 0.0
        while not stop[0]:
            for key, _ in self.selector.select(timeout=0.2):
                client: paho.Client = key.data
                client.loop_read(max_packets=100)
            now = time.monotonic()
            for node in self.nodes.values():
                if node.client.want_write():
                    node.client.loop_write()
            if now - last_misc >= 1.0:
                last_misc = now
                for node in self.nodes.values():
                    node.client.loop_misc()
                    if now >= node.next_heartbeat:
                        self._announce(node, "busy" if node.waiting else "online")
                    for fetch in node.fetching.values():
                        if fetch.heard and now - fetch.heard >= FETCH_RETRY_SECONDS:  # lost: ask again
                            self._ask(node, fetch, set(fetch.asked) or fetch.more(FETCH_WINDOW))

    def close(self) -> None:
        for node in self.nodes.values():
            self._announce(node, "offline")
            node.client.loop_write()
            node.client.disconnect()
        self.selector.close()

    # --- the protocol -------------------------------------------------------------------------

    def _status(self, node: SimNode, state: NodeState, running: str | None = None) -> NodeStatus:
        return NodeStatus(
            node=node.node,
            state=state,
            session=node.session,
            running=running,
            agent=AGENT,
            heartbeat=round(time.time(), 3),
            link=node.links,
            server=server_name(self.address.host, self.address.port),
            interval=HEARTBEAT,
        )

    def _announce(self, node: SimNode, state: NodeState, running: str | None = None) -> None:
        node.announced = time.monotonic()
        node.next_heartbeat = node.announced + HEARTBEAT
        payload = self._status(node, state, running).to_bytes()
        node.client.publish(topics.node_status(node.node), payload, qos=1, retain=True)

    def _on_message(self, client: paho.Client, node: SimNode, msg: paho.MQTTMessage) -> None:
        try:
            parsed = topics.parse(msg.topic)
            if parsed.kind is topics.Kind.ASSIGNMENT:
                self._on_assignment(node, Assignment.parse(msg.payload))
            elif parsed.kind is topics.Kind.SWARM_STATE and msg.payload:
                SwarmState.parse(msg.payload)
                self.stats["states"] += 1
            elif parsed.kind is topics.Kind.BLOB_CHUNK and msg.payload:
                self._on_chunk(node, parsed, Chunk.parse(msg.payload))
            elif parsed.kind is topics.Kind.DISCOVER:
                Discover.parse(msg.payload)
                if not msg.retain:  # answered within the agent's rate limit, by the heartbeat check
                    node.next_heartbeat = min(node.next_heartbeat, node.announced + DISCOVER_MIN_INTERVAL_SECONDS)
        except (topics.TopicError, ProtocolError, ChunkError) as exc:
            self.stats["malformed"] += 1
            print(f"{node.node}: {msg.topic}: {exc}", file=sys.stderr)

    def _on_assignment(self, node: SimNode, assignment: Assignment) -> None:
        self.stats["assignments"] += 1
        key = (*assignment.key, assignment.attempt)
        if key in node.answered or any(a.key == assignment.key for a in node.waiting):
            return  # a duplicate: the agent ignores it (its outbox would resend the result)
        node.waiting.append(assignment)
        self._announce(node, "busy", f"{assignment.swarm}/{assignment.iteration}/{assignment.task}")
        wanted = [sha for sha in dict.fromkeys(assignment.blobs) if sha not in node.have]
        new = [sha for sha in wanted if sha not in node.fetching]
        for sha in new:
            node.fetching[sha] = Transfer(assignment.swarm, sha)
        if new:  # asked for once the broker acknowledged the subscription (_on_subscribe)
            _rc, mid = node.client.subscribe([(topics.blob_chunks(assignment.swarm, sha), 0) for sha in new])
            if mid is not None:
                node.subscribing[mid] = new
        self._run_ready(node)

    def _on_subscribe(self, _client: paho.Client, node: SimNode, mid: int, _codes: Any, _props: Any) -> None:
        for sha in node.subscribing.pop(mid, []):
            fetch = node.fetching.get(sha)
            if fetch is not None and not fetch.heard:
                self._ask(node, fetch, fetch.more(FETCH_WINDOW))

    def _ask(self, node: SimNode, fetch: Transfer, indexes: Iterable[int]) -> None:
        fetch.heard = time.monotonic()
        for first, count in runs(indexes):
            request = BlobRequest(fetch.swarm, node.node, fetch.sha, first, count)
            node.client.publish(topics.blob_request(fetch.swarm, node.node), request.to_bytes(), qos=1)
            self.stats["requests"] += 1

    def _on_chunk(self, node: SimNode, parsed: topics.Topic, chunk: Chunk) -> None:
        fetch = node.fetching.get(parsed.sha or "")
        if fetch is None:
            return  # not ours (any more)
        if chunk.info.sha != fetch.sha or chunk.index != parsed.index:
            raise ChunkError("chunk does not match its topic")
        if fetch.assembler is None:
            fetch.assembler = Assembler(chunk.info, MAX_BLOB_BYTES)
        try:
            data = fetch.assembler.add(chunk.info, chunk.index, chunk.data)
        except DigestMismatch:  # a corrupt chunk got in: start over, asking from chunk 0
            node.fetching[fetch.sha] = Transfer(fetch.swarm, fetch.sha)
            self._ask(node, node.fetching[fetch.sha], node.fetching[fetch.sha].more(FETCH_WINDOW))
            raise
        fetch.asked.discard(chunk.index)
        if data is None:
            fetch.heard = time.monotonic()
            if more := fetch.more(FETCH_WINDOW):
                self._ask(node, fetch, more)
            return
        self.blobs.setdefault(fetch.sha, bytes(data))
        del node.fetching[fetch.sha]
        node.have.add(fetch.sha)
        self.stats["fetched"] += 1
        node.client.unsubscribe(topics.blob_chunks(fetch.swarm, fetch.sha))
        self._run_ready(node)

    def _run_ready(self, node: SimNode) -> None:
        """Answer every waiting assignment whose blobs this node has, in order."""
        while node.waiting and all(sha in node.have for sha in node.waiting[0].blobs):
            assignment = node.waiting.pop(0)
            started = time.perf_counter()
            envelope = ResultEnvelope(
                swarm=assignment.swarm,
                iteration=assignment.iteration,
                task=assignment.task,
                node=node.node,
                attempt=assignment.attempt,
                status="ok",
                results=self._results(assignment),
                duration=time.perf_counter() - started,
            )
            node.client.publish(topics.results(assignment.swarm, node.node), envelope.to_bytes(), qos=1)
            node.answered.add((*assignment.key, assignment.attempt))
            self.stats["results"] += 1
            self._announce(node, "busy" if node.waiting else "online")

    def _results(self, assignment: Assignment) -> dict[str, bytes | Any]:
        """The no-op worker's result: the global ``model`` plus one (computed once per process)."""
        sha = assignment.global_refs.get("model")
        if sha is None:
            return {"done": codec.encode(True)}
        if sha not in self.answers:
            model = codec.decode(self.blobs[sha])
            self.answers[sha] = codec.encode({name: np.asarray(layer) + 1.0 for name, layer in model.items()})
        return {"model": self.answers[sha]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--prefix", default="sim")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    fleet = Fleet(BrokerAddress.parse(args.broker), args.prefix, args.first, args.count)
    stop = [False]

    def on_signal(_signum: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fleet.connect()
    print(f"ready {len(fleet.nodes)}", flush=True)
    try:
        fleet.run(stop)
    finally:
        with contextlib.suppress(OSError):
            fleet.close()
        print(f"stats {fleet.stats}", flush=True)


if __name__ == "__main__":
    main()
