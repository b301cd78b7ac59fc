"""Record every message of a counter-swarm run, normalized, topic by topic: diff two versions'
traces to see whether the wire changed.

    python bench/wire_trace.py trace.txt      # from the repository root (uses tests.conftest)

Two edge-node processes and the coordinator run the counter swarm (3 iterations) on a Mosquitto
started on a free port; a watcher subscribed to ``manta/v2/#`` records each message. Only what
differs between any two runs is normalized away: node sessions, run durations, and the bytes of
large values (their length is kept).
"""

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol import codec
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools.mosquitto import MosquittoProcess, find_mosquitto
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink
from tests.conftest import BrokerUnderTest, NodeProcess

out = Path(sys.argv[1])
tmp = Path(tempfile.mkdtemp())
server = MosquittoProcess(tmp / "mq", binary=find_mosquitto()).start()
broker = BrokerUnderTest("mosquitto", server.url, "5", server.port)
np.save(tmp / "numbers.npy", np.arange(10))
SWARM = "trace-swarm"
trace: list[tuple[str, str]] = []
lock = threading.Lock()


def norm(topic: str, payload: bytes) -> str:
    if not payload:
        return "<empty>"
    try:
        d = json.loads(payload)
        for k in ("session",):
            d.pop(k, None)
        return "json " + json.dumps(d, sort_keys=True)
    except Exception:
        pass
    try:
        d = codec.decode(payload)
    except Exception:
        return f"<{len(payload)} bytes>"
    if isinstance(d, dict):
        d = {
            k: (f"<{len(v)}b>" if isinstance(v, (bytes, bytearray, memoryview)) and len(v) > 64 else v)
            for k, v in d.items()
        }
        d.pop("duration", None)
        if "results" in d and isinstance(d["results"], dict):
            d["results"] = {k: (v if isinstance(v, dict) else f"<{len(v)}b>") for k, v in d["results"].items()}
    return "msgpack " + repr(d)


watcher = MqttLink("tracer", BrokerAddress.parse(server.url), version="5", session_expiry=0)


def on(topic, payload, retained):
    with lock:
        trace.append((topic, norm(topic, payload)))


watcher.route("manta/v2/#", on)
assert watcher.start()
assert watcher.subscribe("manta/v2/#", wait=5)
nodes = [NodeProcess(tmp / "nodes", n, broker, {"numbers.npy": tmp / "numbers.npy"}).start() for n in ("n1", "n2")]
swarm = load_swarm(Path("tests/swarms/counter/swarm.py"))
options = CoordinatorOptions(runs_dir=tmp / "runs", min_nodes=2, wait_nodes=30, mqtt_version="5", swarm_id=SWARM)
summary = Coordinator(swarm, BrokerAddress.parse(server.url), options, ConsoleProgress()).run()
time.sleep(1.0)
for n in nodes:
    n.stop()
time.sleep(0.5)
watcher.stop()
server.stop()
by_topic: dict[str, list[str]] = {}
for t, p in trace:
    by_topic.setdefault(t, []).append(p)
with out.open("w") as f:
    f.write(f"summary {summary.state} {summary.reason} {summary.iterations}\n")
    for t in sorted(by_topic):
        f.write(f"== {t} ({len(by_topic[t])})\n")
        for p in by_topic[t]:
            f.write(f"   {p}\n")
print(summary.state, len(trace), "messages")
