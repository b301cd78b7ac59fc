"""Conversions users call in tasks, with Manta's meanings.

``numpy_to_bytes`` gives ``.npy`` bytes (recursively over dicts), so values stay portable to
Manta. The codec also carries numpy arrays natively, so these are a convenience, not a must.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..protocol import codec


def numpy_to_bytes(data: Any) -> Any:
    """ndarray or list -> ``.npy`` bytes; dict -> the same dict with every value converted."""
    if isinstance(data, dict):
        return {key: numpy_to_bytes(value) for key, value in data.items()}
    if isinstance(data, (np.ndarray, list, np.generic)):
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(data), allow_pickle=False)
        return buffer.getvalue()
    raise ValueError(f"numpy_to_bytes takes an ndarray, a list or a dict, not {type(data).__name__}")


def bytes_to_numpy(data: Any) -> Any:
    """Inverse of :func:`numpy_to_bytes` (recursive over dicts; pickled arrays are refused)."""
    if isinstance(data, dict):
        return {key: bytes_to_numpy(value) for key, value in data.items()}
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    raise ValueError(f"bytes_to_numpy takes bytes or a dict, not {type(data).__name__}")


def dict_to_bytes(data: Any) -> bytes:
    """msgpack-encode ``data`` (the wire format of globals and results)."""
    return codec.encode(data)


def bytes_to_dict(data: bytes) -> Any:
    return codec.decode(data)


def torchmodel_to_bytes(model: Any) -> bytes:
    """``torch.save`` of a model or state dict (torch is imported only here)."""
    import torch

    buffer = io.BytesIO()
    torch.save(model, buffer)
    return buffer.getvalue()


def bytes_to_torchmodel(data: bytes) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and containers, never arbitrary code."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)
