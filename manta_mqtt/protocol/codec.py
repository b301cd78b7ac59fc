"""The one codec: msgpack, with numpy arrays as a native extension type.

An array travels as ext type 1: ``u8 len(dtype) | dtype.str | u8 ndim | ndim x u64 shape | raw``.
Decoding wraps the raw bytes with ``np.frombuffer`` (no copy beyond msgpack's own slice), so the
arrays it returns are read-only views; call ``.copy()`` to modify one in place.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import numpy as np

from .limits import MAX_ARRAY_DIMENSIONS as MAX_ARRAY_DIMENSIONS
from .limits import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # the cap on one decode: MQTT's maximum packet size

NDARRAY_EXT = 1
_MAX_INTP = int(np.iinfo(np.intp).max)  # numpy's bound on an array's size in bytes (and on each dimension)


class CodecError(ValueError):
    """Bytes that are not a valid encoding, or a value that cannot be encoded."""


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
    dtype = array.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CodecError(f"cannot encode numpy dtype {dtype!r}: use plain numeric/bytes dtypes")
    if array.ndim > MAX_ARRAY_DIMENSIONS:
        raise CodecError(f"arrays of more than {MAX_ARRAY_DIMENSIONS} dimensions are not supported")
    descr = dtype.str.encode("ascii")
    header = struct.pack(f"<B{len(descr)}sB{array.ndim}Q", len(descr), descr, array.ndim, *array.shape)
    # a byte view of the data (no copy unless the array was not contiguous); join copies once
    raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data if array.nbytes else b""
    return msgpack.ExtType(NDARRAY_EXT, b"".join((header, raw)))


def _unpack_array(data: bytes) -> np.ndarray:
    """Wrap the raw bytes, after checking the shape describes exactly the bytes present.

    The check is the whole defence against decode bombs: a 150-byte extension must not become a
    gigabyte array, so a zero-itemsize dtype (numpy never makes arrays of one) is refused rather
    than trusted, and a shape that numpy cannot index is refused before numpy sees it.
    """
    try:
        (dlen,) = struct.unpack_from("<B", data, 0)
        descr = data[1 : 1 + dlen].decode("ascii")
        (ndim,) = struct.unpack_from("<B", data, 1 + dlen)
        shape = struct.unpack_from(f"<{ndim}Q", data, 2 + dlen)
        dtype = np.dtype(descr)
    except (struct.error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed ndarray extension: {exc}") from exc
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CodecError(f"refusing ndarray of dtype {descr!r}")
    if dtype.itemsize == 0:
        raise CodecError(f"refusing ndarray of zero-size dtype {descr!r}")
    if ndim > MAX_ARRAY_DIMENSIONS:
        raise CodecError(f"ndarray of {ndim} dimensions (at most {MAX_ARRAY_DIMENSIONS})")
    # numpy needs every dimension, and the product of the non-zero ones in bytes, to fit an intp
    if math.prod(max(1, dim) for dim in shape) * dtype.itemsize > _MAX_INTP:
        raise CodecError("ndarray extension shape is too large")
    offset = 2 + dlen + 8 * ndim
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - offset:
        raise CodecError("ndarray extension size does not match its shape")
    try:
        return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    except ValueError as exc:  # anything numpy still refuses is malformed, never a crash
        raise CodecError(f"malformed ndarray extension: {exc}") from exc


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _pack_array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise CodecError(f"cannot encode value of type {type(value).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == NDARRAY_EXT:
        return _unpack_array(data)
    raise CodecError(f"unknown msgpack extension type {code}")


def encode(value: Any) -> bytes:
    """Encode any msgpack-able value; numpy arrays and scalars are supported natively."""
    try:
        data: bytes = msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False)
        return data
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode bytes from the network; raise :class:`CodecError` on anything malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise CodecError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            ext_hook=_ext_hook,
            strict_map_key=False,
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ValueError...)
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc
