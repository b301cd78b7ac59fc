"""How a coordinator run is configured, and what it reports when it ends."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.limits import (
    DEFAULT_CHUNK_SIZE,
    MAX_BLOB_BYTES,
    MAX_NODE_RESULT_BYTES,
    MAX_NODE_UPLOAD_BYTES,
    MAX_TOTAL_RESULT_BYTES,
    MAX_TOTAL_UPLOAD_BYTES,
    UPLOAD_WINDOW_BYTES,
)
from ..runtime.reuse import ReuseSettings
from .engine import Timing


@dataclass
class CoordinatorOptions:
    runs_dir: Path = Path("manta_runs")
    min_nodes: int = 1
    start_with_fewer: bool = False  # min_nodes not met within wait_nodes: start anyway, or fail (exit 4)
    wait_nodes: float = 60.0  # how long to wait for min_nodes (and for any eligible node later)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    mqtt_version: str = "auto"
    seed: int = 0
    max_iterations: int = 1000
    grace: float = 60.0  # added to a task's timeout for fetching and uploading
    swarm_id: str | None = None
    max_upload: int = MAX_BLOB_BYTES
    upload_budget_per_node: int = MAX_NODE_UPLOAD_BYTES  # bytes held in one node's incomplete uploads
    upload_budget_total: int = MAX_TOTAL_UPLOAD_BYTES  # ... in all nodes' together
    upload_window: int = UPLOAD_WINDOW_BYTES  # upload bytes granted and not yet received (under the broker's queue)
    result_budget_per_node: int = MAX_NODE_RESULT_BYTES  # envelopes held unjudged, for one node
    result_budget_total: int = MAX_TOTAL_RESULT_BYTES  # ... for all nodes together
    resume: Path | None = None  # a run directory to continue from its last completed step
    reconnect_grace: float = 15.0  # a node gone offline mid-step may come back and report within this
    signing_key: Path | None = None  # the swarm owner's Ed25519 key (manta-mqtt keygen); None: unsigned
    stale_after: float = 90.0  # a node whose status (a heartbeat every 30 s) stops this long is gone
    task_reuse: ReuseSettings = field(default_factory=ReuseSettings)  # warm coordinator task processes

    def timing(self) -> Timing:
        return Timing(
            grace=self.grace,
            reconnect_grace=self.reconnect_grace,
            wait_nodes=self.wait_nodes,
            min_nodes=self.min_nodes,
            start_with_fewer=self.start_with_fewer,
            max_iterations=self.max_iterations,
            stale_after=self.stale_after,
        )


@dataclass
class RunSummary:
    swarm_id: str
    state: str
    reason: str
    iterations: int
    store_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    started: bool = True  # its first iteration began (False: no eligible nodes, or stopped before)
    kept: bool = True  # store_path holds the run (a new run that never started is removed)
    signal: int = 0  # the signal that interrupted it

    @property
    def exit_code(self) -> int:
        """``manta-mqtt run``'s exit status (docs/reliability.md): 0 completed or stopped, 1 failed,
        4 failed before it started (--min-nodes not met), 128 + the signal when interrupted."""
        if self.state in ("completed", "stopped"):
            return 0
        if self.state == "interrupted":
            return 128 + (self.signal or 2)
        return 1 if self.started else EXIT_NOT_STARTED


#: Exit statuses of ``manta-mqtt run`` besides 0, 1 and 128 + signal (2 is click's usage error).
EXIT_NO_BROKER = 3  # cannot connect to the broker, or it refused us
EXIT_NOT_STARTED = 4  # the run failed before its first step: --min-nodes not met within --wait


class SwarmFailed(Exception):
    """The swarm cannot go on; the message says why."""


def make_swarm_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "swarm"
    return f"{slug}-{secrets.token_hex(4)}"
