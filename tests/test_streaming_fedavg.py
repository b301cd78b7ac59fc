"""``fedavg`` / ``FedAvg``: the single-pass weighted mean of models, against numpy's own
``np.average``, and the errors a bad stream gets (which node, and why)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from manta_light import FedAvg as FedAvgFromPackage
from manta_light.utils import FedAvg, FedAvgError, fedavg, numpy_to_bytes

RNG = np.random.default_rng(7)
SHAPES = {"conv": (4, 3, 3), "bias": (4,), "dense": (2_500_000,)}  # dense spans several slices


def model(dtype: type = np.float64) -> dict[str, np.ndarray]:
    return {name: RNG.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def reference(models: list[dict[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    return {name: np.average(np.stack([m[name] for m in models]), axis=0, weights=weights) for name in SHAPES}


def test_weighted_mean_equals_numpy() -> None:
    models = [model() for _ in range(4)]
    weights = [600, 1200, 1, 0]  # a node with no samples adds nothing
    stream = ((f"n{i}", {"model": m, "num_samples": w}) for i, (m, w) in enumerate(zip(models, weights, strict=True)))
    mean = fedavg(stream)
    assert isinstance(mean, dict) and list(mean) == list(SHAPES)
    for name, expected in reference(models, weights).items():
        np.testing.assert_allclose(mean[name], expected, rtol=1e-12, atol=1e-12)
        assert mean[name].dtype == np.float64


def test_float32_models_are_summed_as_float32() -> None:
    """The running sums keep the model's dtype (memory of one model), within float32 precision."""
    models = [model(np.float32) for _ in range(3)]
    mean = fedavg({f"n{i}": {"model": m, "num_samples": 10 * (i + 1)} for i, m in enumerate(models)})
    assert isinstance(mean, dict)
    for name, expected in reference(models, [10, 20, 30]).items():
        assert mean[name].dtype == np.float32
        np.testing.assert_allclose(mean[name], expected, rtol=1e-5, atol=1e-6)


def test_lists_of_arrays_npy_bytes_and_plain_mean() -> None:
    """A model may be a list of arrays, or the seed's dict of .npy bytes; no weight_key: plain mean."""
    lists = [[np.full(3, float(i)), np.arange(4) * i] for i in range(1, 4)]
    mean = fedavg(((f"n{i}", m) for i, m in enumerate(lists)), model_key=None, weight_key=None)
    assert isinstance(mean, list)
    np.testing.assert_array_equal(mean[0], np.full(3, 2.0))
    np.testing.assert_array_equal(mean[1], np.arange(4) * 2.0)
    seed_style = {f"n{i}": {"w": numpy_to_bytes({"a": np.full(2, float(i))})} for i in (1, 5)}
    plain = fedavg(seed_style, model_key="w", weight_key=None)
    assert isinstance(plain, dict)
    np.testing.assert_array_equal(plain["a"], [3.0, 3.0])


def test_class_form_and_its_export() -> None:
    assert FedAvgFromPackage is FedAvg
    average = FedAvg()
    average.add({"a": np.ones(2)}, 3)
    average.add({"a": np.zeros(2)}, 1)
    assert average.count == 2 and average.total_weight == 4.0
    result = average.result()
    assert isinstance(result, dict)
    np.testing.assert_array_equal(result["a"], [0.75, 0.75])


def _stream(values: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield from values.items()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n1": {"model": {"a": np.ones(2)}}}, "node 'n1': its value has no 'num_samples'"),
        ({"n1": {"model": {"a": np.ones(2)}, "num_samples": 0}}, "sum to 0"),
        (
            {
                "n1": {"model": {"a": np.ones(2)}, "num_samples": 0},
                "n2": {"model": {"a": np.ones(2)}, "num_samples": 0},
            },
            "the weights of all 2 models sum to 0",
        ),
        ({"n1": {"model": {"a": np.ones(2)}, "num_samples": -5}}, "node 'n1': the weight must be finite and >= 0"),
        ({"n1": {"model": {"a": np.ones(2)}, "num_samples": float("nan")}}, "finite"),
        ({"n1": {"model": {"a": np.ones(2)}, "num_samples": True}}, "node 'n1': the weight must be a number"),
        ({"n1": {"model": {"a": np.ones(2)}, "num_samples": "600"}}, "the weight must be a number"),
        ({"n1": {"weights": {}, "num_samples": 1}}, "node 'n1': its value has no 'model'"),
        ({"n1": [1, 2]}, "node 'n1': its value has no 'model' \\(it has list\\)"),
        ({}, "no model to average"),
    ],
)
def test_bad_weights_and_values_are_clear_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(FedAvgError, match=message):
        fedavg(_stream(values))


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"a": np.ones(3), "b": np.ones(1)}, r"node 'n2': layer 'a' has shape \(3,\), the first model \(2,\)"),
        ({"a": np.ones(2)}, r"node 'n2': layers \['a'\] differ from the first model's \['a', 'b'\]"),
        ({"b": np.ones(1), "a": np.ones(2)}, "differ from the first model's"),
        ({"a": np.array(["x", "y"]), "b": np.ones(1)}, "node 'n2': layer 'a' is not numeric"),
        ("not a model", "node 'n2': a model is a dict or a list of arrays, not str"),
    ],
)
def test_mismatched_models_are_clear_errors(second: Any, message: str) -> None:
    first = {"a": np.ones(2), "b": np.ones(1)}
    stream = {"n1": {"model": first, "num_samples": 1}, "n2": {"model": second, "num_samples": 1}}
    with pytest.raises(FedAvgError, match=message):
        fedavg(stream)


def test_weight_key_without_model_key_is_refused() -> None:
    with pytest.raises(ValueError, match="weight_key=None"):
        fedavg({}, model_key=None)


def test_result_divides_in_place_once_and_refuses_more_models() -> None:
    """The mean is the running sum divided in place (no extra model in memory): asking twice gives
    the same mean, and adding after it is an error rather than a silently wrong average."""
    average = FedAvg()
    average.add({"w": np.array([1.0, 3.0], np.float32)}, 1)
    average.add({"w": np.array([3.0, 5.0], np.float32)}, 1)
    first = average.result()
    assert isinstance(first, dict)
    np.testing.assert_array_equal(first["w"], [2.0, 4.0])
    second = average.result()
    assert isinstance(second, dict)
    np.testing.assert_array_equal(second["w"], [2.0, 4.0])
    with pytest.raises(FedAvgError, match="after result"):
        average.add({"w": np.array([1.0, 1.0], np.float32)}, 1)
