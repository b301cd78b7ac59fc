"""A coordinator in its own process, for scenarios that kill it:

    python -m tests.chaos.runner RUNS_DIR BROKER_URL VERSION SETTINGS_JSON [--resume RUN_DIR]

SETTINGS_JSON sets globals ("globals") and worker task options ("worker") of the counter swarm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.swarm import load_swarm
from manta_mqtt.transport.mqtt import BrokerAddress

COUNTER = Path(__file__).resolve().parent.parent / "swarms" / "counter" / "swarm.py"


def counter_swarm(settings: dict) -> object:  # type: ignore[type-arg]
    swarm = load_swarm(COUNTER)
    swarm.globals.update(settings.get("globals", {}))
    if "size" in settings.get("globals", {}):
        swarm.globals["weights"] = np.zeros(swarm.globals["size"], dtype=np.float64)
    for key, value in settings.get("worker", {}).items():
        setattr(swarm.worker, key, value)  # type: ignore[attr-defined]
    return swarm


def main(argv: list[str]) -> int:
    runs, url, version, settings = argv[1], argv[2], argv[3], json.loads(argv[4])
    resume = Path(argv[6]) if len(argv) > 6 and argv[5] == "--resume" else None
    options = CoordinatorOptions(
        runs_dir=Path(runs),
        min_nodes=settings.get("min_nodes", 1),
        wait_nodes=30,
        mqtt_version=version,
        resume=resume,
        signing_key=Path(settings["signing_key"]) if settings.get("signing_key") else None,
    )
    summary = Coordinator(counter_swarm(settings), BrokerAddress.parse(url), options).run()  # type: ignore[arg-type]
    print(json.dumps({"state": summary.state, "reason": summary.reason, "iterations": summary.iterations}))
    return 0 if summary.state != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
