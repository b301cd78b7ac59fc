"""Can `manta-mqtt top` keep up with 1,000 nodes? Folding a round of their heartbeats into the
view, and drawing one full screen of it, next to each other.

    python bench/bench_top.py [--nodes 1000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import time

from _common import median_seconds, write
from rich.console import Console

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus
from manta_mqtt.tools.top.model import SiteView
from manta_mqtt.tools.top.render import screen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    now = time.time()
    messages = [
        (topics.node_status(f"pi-{i:04d}"), NodeStatus(f"pi-{i:04d}", "online", ["d.npz"], heartbeat=now).to_bytes())
        for i in range(args.nodes)
    ]
    view = SiteView()

    def fold() -> None:
        for topic, payload in messages:
            view.take(topic, payload, len(payload), now)

    def draw(height: int) -> None:
        Console(file=io.StringIO(), width=170, height=height).print(
            screen(view, now, "mqtt://b", sort="cpu", only="all", height=height)
        )

    fold_s = median_seconds(fold, args.repeat)
    draw_s = median_seconds(lambda: draw(50), args.repeat)
    draw_all_s = median_seconds(lambda: draw(args.nodes + 40), max(1, args.repeat // 5))
    rows = [
        {"what": f"fold {args.nodes} statuses", "seconds": fold_s, "per_message_us": fold_s / args.nodes * 1e6},
        {"what": "draw a 50-line screen", "seconds": draw_s},
        {"what": f"draw all {args.nodes} rows", "seconds": draw_all_s},
    ]
    for row in rows:
        print(f"{row['what']:<28} {row['seconds'] * 1000:8.1f} ms")
    print(f"one round of heartbeats + one redraw: {(fold_s + draw_s) * 1000:.1f} ms (a round comes every 30 s)")
    write("top", rows, nodes=args.nodes)


if __name__ == "__main__":
    main()
