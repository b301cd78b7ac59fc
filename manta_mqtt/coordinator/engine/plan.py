"""What does not change during a run: the swarm's graph, its code and the timing rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...protocol.limits import MAX_NODE_RESULT_BYTES, MAX_TOTAL_RESULT_BYTES
from ...protocol.messages import CodeRef
from ...swarm.graph import SwarmGraph


@dataclass(frozen=True)
class Timing:
    grace: float = 60.0  # added to a task's timeout for fetching and uploading
    reconnect_grace: float = 15.0  # a node gone offline mid-step may come back and report within this
    wait_nodes: float = 60.0  # how long to wait for min_nodes, and for any eligible node later
    min_nodes: int = 1
    # fewer than min_nodes at the end of wait_nodes: start with them (True) or fail. The engine's
    # default keeps its old behaviour; CoordinatorOptions and the CLI default to failing.
    start_with_fewer: bool = True
    max_iterations: int = 1000
    stale_after: float = 90.0  # a node silent this long (no status, not even its heartbeat) is gone


@dataclass(frozen=True)
class Plan:
    swarm: str
    graph: SwarmGraph
    code: Mapping[str, CodeRef]  # task alias -> its code bundle
    timing: Timing = Timing()
    result_bytes_per_node: int = MAX_NODE_RESULT_BYTES  # held for results whose step is not open
    result_bytes_total: int = MAX_TOTAL_RESULT_BYTES
