"""Simulated edge nodes: many real MQTT connections in one process, speaking protocol v1.

A load generator for bench_scale.py, not an agent: it runs no task process and checks no
signature, but everything on the wire is the real thing, built and parsed by
``manta_mqtt.protocol`` (topics, NodeStatus, Assignment, BlobMeta/Chunk, ResultEnvelope):

- each node publishes a retained NodeStatus (will: offline), again as a heartbeat, "busy" while
  it works and "online" after; it subscribes to its assignments and to the swarms' state;
- an assignment is parsed with ``Assignment.parse``; the blobs it refers to that this node does
  not have yet are fetched from their retained ``BlobMeta`` (inline) or chunks (a minimal
  BlobFetcher: every chunk topic at once, reassembled and sha256-checked by ``Assembler``);
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from manta_mqtt.protocol import codec, topics
from manta_mqtt.protocol.chunking import Assembler, ChunkError, sha256
from manta_mqtt.protocol.limits import MAX_BLOB_BYTES
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobMeta,
    Chunk,
    NodeState,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmState,
)
from manta_mqtt.transport.address import BrokerAddress

AGENT = "manta-mqtt simnode"
HEARTBEAT = 30.0  # seconds, as the edge agent's default


@dataclass
class Fetch:
    """One blob a node is fetching: by its inline meta, or by its chunks."""

    swarm: str
    sha: str
    assembler: Assembler | None = None


@dataclass
class SimNode:
    node: str
    client: paho.Client
    session: int
    have: set[str] = field(default_factory=set)  # blobs this node fetched
    fetching: dict[str, Fetch] = field(default_factory=dict)
    waiting: list[Assignment] = field(default_factory=list)  # assignments until their blobs arrive
    answered: set[tuple[str, int, str, int]] = field(default_factory=set)
    next_heartbeat: float = 0.0


class Fleet:
    """``count`` simulated nodes named ``{prefix}{first + i}``, all in this process."""

    def __init__(self, address: BrokerAddress, prefix: str, first: int, count: int) -> None:
        self.address = address
        self.names = [f"{prefix}{first + i}" for i in range(count)]
        self.nodes: dict[str, SimNode] = {}
        self.blobs: dict[str, bytes] = {}  # sha -> bytes, once per process
        self.answers: dict[str, bytes] = {}  # model sha -> encoded result, once per process
        self.selector = selectors.DefaultSelector()
        self.stats = {"assignments": 0, "results": 0, "fetched": 0, "states": 0, "malformed": 0}
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
            offline = self._status(node, "offline")
            client.will_set(topics.node_status(name), offline.to_bytes(), qos=1, retain=True)
            client.connect(self.address.host, self.address.port, keepalive=60)
            sock = client.socket()
            assert sock is not None
            self.selector.register(sock, selectors.EVENT_READ, client)
            self.nodes[name] = node

    def _on_connect(self, client: paho.Client, node: SimNode, _flags: Any, _rc: Any, _props: Any) -> None:
        client.subscribe([(topics.my_assignments(node.node), 1), (topics.all_swarm_states(), 1)])
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
            interval=HEARTBEAT,
        )

    def _announce(self, node: SimNode, state: NodeState, running: str | None = None) -> None:
        node.next_heartbeat = time.monotonic() + HEARTBEAT
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
            elif parsed.kind in (topics.Kind.BLOB_META, topics.Kind.BLOB_CHUNK) and msg.payload:
                self._on_blob(node, parsed, msg.payload)
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
        filters = []
        for sha in wanted:
            if sha not in node.fetching:
                node.fetching[sha] = Fetch(assignment.swarm, sha)
                filters.append((topics.blob_meta(assignment.swarm, sha), 1))
        if filters:
            node.client.subscribe(filters)
        self._run_ready(node)

    def _on_blob(self, node: SimNode, parsed: topics.Topic, payload: bytes) -> None:
        fetch = node.fetching.get(parsed.sha or "")
        if fetch is None:
            return
        data: bytes | bytearray | None = None
        if parsed.kind is topics.Kind.BLOB_META:
            meta = BlobMeta.parse(payload)
            if meta.inline is not None:
                if sha256(meta.inline) != fetch.sha:
                    raise ChunkError(f"inline blob {fetch.sha[:12]} does not match its sha256")
                data = meta.inline
            elif fetch.assembler is None:  # a chunked blob: ask for every chunk at once (small blobs)
                fetch.assembler = Assembler(meta.info, MAX_BLOB_BYTES)
                chunks = [(topics.blob_chunk(fetch.swarm, fetch.sha, i), 1) for i in range(meta.info.count)]
                node.client.subscribe(chunks)
        else:
            chunk = Chunk.parse(payload)
            if fetch.assembler is not None:
                data = fetch.assembler.add(chunk.info, chunk.index, chunk.data)
        if data is None:
            return
        self.blobs.setdefault(fetch.sha, bytes(data))
        del node.fetching[fetch.sha]
        node.have.add(fetch.sha)
        self.stats["fetched"] += 1
        meta_topic = topics.blob_meta(fetch.swarm, fetch.sha)
        count = fetch.assembler.info.count if fetch.assembler is not None else 0
        node.client.unsubscribe([meta_topic, *(topics.blob_chunk(fetch.swarm, fetch.sha, i) for i in range(count))])
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
