"""Turning results into a few numbers to show: the mean over nodes of each scalar metric."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..protocol import codec
from .store import RunStore

#: Results up to this size are decoded to show their metrics; larger ones (models) are not.
METRICS_MAX_BYTES = 64 * 1024


def _last_number(value: Any) -> float | None:
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def summarize(values: Mapping[str, Any]) -> dict[str, float]:
    """``{node: {"val_acc": [..., 0.96], ...}}`` -> ``{"val_acc": mean of last values}``.

    Values that are not maps of numbers (or lists of numbers) are ignored.
    """
    sums: dict[str, list[float]] = {}
    for value in values.values():
        if not isinstance(value, dict):
            continue
        for key, item in value.items():
            number = _last_number(item)
            if isinstance(key, str) and number is not None:
                sums.setdefault(key, []).append(number)
    return {key: sum(nums) / len(nums) for key, nums in sorted(sums.items())}


def step_metrics(store: RunStore, iteration: int, task: str) -> dict[str, float]:
    """The metrics of one step's small results (models are too large to be metrics, and skipped)."""
    values: dict[str, Any] = {}
    for node, tag, sha, size in store.step_results(iteration, task):
        if size <= METRICS_MAX_BYTES:
            try:
                values[f"{node}/{tag}"] = store.value(sha)
            except codec.CodecError:
                continue
    return summarize(values)
