"""Federated averaging in one pass: a running weighted sum, so an aggregator's memory grows with
the model, not with nodes x model.

A model is a dict of arrays (layer name -> array) or a list of arrays; a layer may also be
``.npy`` bytes (what ``numpy_to_bytes`` makes, as the seed's workers send). Sums are kept in the
layer's floating dtype (float32 stays float32, integers become float64), layer by layer and in
slices, so adding a model needs no copy of it beyond one slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .utils import bytes_to_numpy

#: Elements added per slice: bounds the temporary ``weight * slice`` to a few MiB.
_SLICE = 1 << 20

Model = dict[Any, Any] | list[Any]


class FedAvgError(ValueError):
    """A model or weight that cannot be averaged with the others (which node, and why)."""


def _layers(model: Any, who: str) -> list[tuple[str | int, np.ndarray]]:
    """``(key, array)`` of every layer of ``model`` in order; a dict's keys, a list's indices."""
    if isinstance(model, Mapping):
        items: Iterable[tuple[str | int, Any]] = model.items()
    elif isinstance(model, Sequence) and not isinstance(model, (str, bytes, bytearray)):
        items = enumerate(model)
    else:
        raise FedAvgError(f"{who}: a model is a dict or a list of arrays, not {type(model).__name__}")
    layers = []
    for key, layer in items:
        array = bytes_to_numpy(layer) if isinstance(layer, (bytes, bytearray, memoryview)) else np.asarray(layer)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise FedAvgError(f"{who}: layer {key!r} is not numeric ({array.dtype})")
        layers.append((key, array))
    return layers


def _weight(weight: Any, who: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
        raise FedAvgError(f"{who}: the weight must be a number of samples, not {weight!r}")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise FedAvgError(f"{who}: the weight must be finite and >= 0, not {weight!r}")
    return value


class FedAvg:
    """The weighted mean of models added one at a time: ``add(model, weight)`` then ``result()``.

    Holds one running sum per layer (the size of one model) and the total weight. A node of
    weight 0 is allowed (it adds nothing); a total of 0 is an error when the result is asked.
    """

    def __init__(self) -> None:
        self._sums: list[tuple[str | int, np.ndarray]] | None = None
        self._as_dict = True
        self.total_weight = 0.0
        self.count = 0
        self._divided = False  # result() divided the sums: they are the means now

    def add(self, model: Any, weight: Any = 1, *, node: str | None = None) -> None:
        """Add ``weight`` x ``model`` to the running sums; ``node`` only names it in errors."""
        if self._divided:
            raise FedAvgError("add() after result(): the sums are the means now; start a new FedAvg")
        who = f"node {node!r}" if node is not None else f"model #{self.count + 1}"
        w = _weight(weight, who)
        layers = _layers(model, who)
        if self._sums is None:
            self._as_dict = isinstance(model, Mapping)
            self._sums = [(key, np.zeros(a.shape, np.result_type(a.dtype, np.float32))) for key, a in layers]
        self._check_like(layers, who)
        for (_, total), (_, array) in zip(self._sums, layers, strict=True):
            flat_total, flat = total.reshape(-1), array.reshape(-1)
            for start in range(0, flat.size, _SLICE):
                flat_total[start : start + _SLICE] += flat[start : start + _SLICE] * w
        self.total_weight += w
        self.count += 1

    def _check_like(self, layers: list[tuple[str | int, np.ndarray]], who: str) -> None:
        assert self._sums is not None
        first = [key for key, _ in self._sums]
        keys = [key for key, _ in layers]
        if keys != first:
            raise FedAvgError(f"{who}: layers {keys} differ from the first model's {first}")
        for (key, total), (_, array) in zip(self._sums, layers, strict=True):
            if array.shape != total.shape:
                raise FedAvgError(f"{who}: layer {key!r} has shape {array.shape}, the first model {total.shape}")

    def result(self) -> Model:
        """The weighted mean, shaped like the models (a dict or a list of arrays)."""
        if self._sums is None:
            raise FedAvgError("no model to average")
        if self.total_weight <= 0:
            raise FedAvgError(f"the weights of all {self.count} models sum to 0: nothing to average by")
        if not self._divided:  # in place: a new array per layer would be one more model in memory
            for _, total in self._sums:
                total /= self.total_weight
            self._divided = True
        means = self._sums
        return {key: mean for key, mean in means} if self._as_dict else [mean for _, mean in means]


def fedavg(
    results: Iterable[tuple[str, Any]] | Mapping[str, Any],
    *,
    model_key: str | None = "model",
    weight_key: str | None = "num_samples",
) -> Model:
    """FedAvg of a stream of ``(node_id, value)``, e.g. ``fedavg(self.world.results.iter("update"))``.

    Each value is a dict holding the model under ``model_key`` and its number of samples under
    ``weight_key``; ``weight_key=None`` weighs every node 1 (a plain mean). ``model_key=None``:
    the value is the model itself, and every node weighs 1. Reads the stream once and keeps no
    value, so fed by ``results.iter`` it holds one node's value and the running sums. A dict
    ``{node: value}`` (what ``results.select`` returns) is accepted too.
    """
    if model_key is None and weight_key is not None:
        raise ValueError("with model_key=None the value is the model itself: pass weight_key=None too")
    stream = results.items() if isinstance(results, Mapping) else results
    average = FedAvg()
    for node, value in stream:
        who = f"node {node!r}"
        if model_key is None:
            average.add(value, 1, node=node)
        else:
            if not isinstance(value, Mapping) or model_key not in value:
                found = sorted(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
                raise FedAvgError(f"{who}: its value has no {model_key!r} (it has {found})")
            if weight_key is not None and weight_key not in value:
                raise FedAvgError(f"{who}: its value has no {weight_key!r} (the number of samples to weigh it by)")
            average.add(value[model_key], 1 if weight_key is None else value[weight_key], node=node)
        del value  # hold no value while the stream fetches the next one
    return average.result()
