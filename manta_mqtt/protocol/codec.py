"""The one codec: msgpack, with numpy arrays as a native extension type.

An array travels as ext type 1: ``u8 len(dtype) | dtype.str | u8 ndim | ndim x u64 shape | raw``.

Encoding uses msgpack-python (its bytes are the protocol's golden bytes). Decoding uses msgspec,
whose ext hook gets a memoryview *into the input buffer*, so an array is wrapped with
``np.frombuffer`` without copying its bytes: decoded arrays are read-only views that keep the
whole input buffer alive (call ``.copy()`` to modify one, or to let a large message go while a
small array from it lives on). numpy is imported only when an array is encoded or decoded, so a
process that never sees one (the idle edge agent) does not pay for it.
"""

from __future__ import annotations

import gc
import math
import struct
import sys
from typing import TYPE_CHECKING, Any

import msgpack
import msgspec

from .limits import MAX_ARRAY_DIMENSIONS as MAX_ARRAY_DIMENSIONS
from .limits import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # the cap on one decode: MQTT's maximum packet size

if TYPE_CHECKING:
    import numpy as np

NDARRAY_EXT = 1
_MAX_INTP = sys.maxsize  # numpy's bound on an array's size in bytes (and on each dimension): intp is Py_ssize_t

#: What a decoded value may be made of: msgpack's own types, plus ndarray once numpy is loaded.
#: msgspec also makes tuples (an array used as a map key) and datetimes (ext -1, the timestamp):
#: msgpack-python refused the first, the encoder never makes the second, so both are refused.
_LEAVES: set[type] = {type(None), bool, int, float, str, bytes}
_NODES = (dict, list)
_ALLOWED: set[type] = _LEAVES | set(_NODES)


class CodecError(ValueError):
    """Bytes that are not a valid encoding, or a value that cannot be encoded."""


def _numpy() -> Any:
    """numpy, imported at the first array (and ndarray becomes a type a decoded value may hold)."""
    import numpy

    if numpy.ndarray not in _LEAVES:
        _LEAVES.add(numpy.ndarray)
        _ALLOWED.add(numpy.ndarray)
    return numpy


def _array_parts(array: np.ndarray) -> tuple[bytes, memoryview | bytes]:
    """The extension's header and a byte view of the array's data (no copy unless the array was
    not contiguous)."""
    numpy = _numpy()
    dtype = array.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CodecError(f"cannot encode numpy dtype {dtype!r}: use plain numeric/bytes dtypes")
    if array.ndim > MAX_ARRAY_DIMENSIONS:
        raise CodecError(f"arrays of more than {MAX_ARRAY_DIMENSIONS} dimensions are not supported")
    descr = dtype.str.encode("ascii")
    header = struct.pack(f"<B{len(descr)}sB{array.ndim}Q", len(descr), descr, array.ndim, *array.shape)
    raw = numpy.ascontiguousarray(array).reshape(-1).view(numpy.uint8).data if array.nbytes else b""
    return header, raw


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
    return msgpack.ExtType(NDARRAY_EXT, b"".join(_array_parts(array)))  # join copies once


def _unpack_array(data: memoryview) -> np.ndarray:
    """Wrap the raw bytes, after checking the shape describes exactly the bytes present.

    The check is the whole defence against decode bombs: a 150-byte extension must not become a
    gigabyte array, so a zero-itemsize dtype (numpy never makes arrays of one) is refused rather
    than trusted, and a shape that numpy cannot index is refused before numpy sees it.
    """
    numpy = _numpy()
    try:
        (dlen,) = struct.unpack_from("<B", data, 0)
        descr = str(data[1 : 1 + dlen], "ascii")
        (ndim,) = struct.unpack_from("<B", data, 1 + dlen)
        shape = struct.unpack_from(f"<{ndim}Q", data, 2 + dlen)
        dtype = numpy.dtype(descr)
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
        array: np.ndarray = numpy.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    except ValueError as exc:  # anything numpy still refuses is malformed, never a crash
        raise CodecError(f"malformed ndarray extension: {exc}") from exc
    array.flags.writeable = False  # already so over bytes; over a bytearray the view would be writable
    return array


def _default(value: Any) -> Any:
    numpy = sys.modules.get("numpy")  # a value can only be a numpy object if numpy is loaded
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return _pack_array(value)
        if isinstance(value, numpy.generic):
            return value.item()
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise CodecError(f"cannot encode value of type {type(value).__name__}")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == NDARRAY_EXT:
        return _unpack_array(data)
    raise CodecError(f"unknown msgpack extension type {code}")


# msgspec refuses, before allocating, any str/bin/ext/array/map whose declared length exceeds the
# bytes left in the input (so a header claiming 2**32 elements fails at once); decoders are thread-safe
_DECODER = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def _check_types(value: Any) -> None:
    """Refuse a decoded value holding anything but msgpack's own types and arrays.

    One level at a time: ``gc.get_referents`` lists the items of every list and the keys and
    values of every dict of the level in C (a dict of str keys yields only its values: str is
    allowed anyway), so the walk costs a fraction of the decode even for many small containers.
    """
    if type(value) not in _ALLOWED:
        raise CodecError(f"unsupported decoded type {type(value).__name__} (msgpack timestamp?)")
    level = [value]
    while level:
        children = gc.get_referents(*level)
        kinds = set(map(type, children))
        if kinds <= _LEAVES:
            return
        if not kinds <= _ALLOWED:
            bad = ", ".join(sorted(kind.__name__ for kind in kinds - _ALLOWED))
            raise CodecError(f"unsupported decoded type {bad} (an array as a map key, or a msgpack timestamp)")
        level = [child for child in children if child.__class__ is dict or child.__class__ is list]


def encode(value: Any) -> bytes:
    """Encode any msgpack-able value; numpy arrays and scalars are supported natively."""
    try:
        data: bytes = msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False)
        return data
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc


#: Arrays at least this large are sent by :func:`encode_parts` as views of their own memory.
_VIEW_BYTES = 64 * 1024
#: How deep :func:`encode_parts` looks for large arrays; below, values are packed as by encode().
_VIEW_DEPTH = 8


def encode_parts(value: Any) -> list[bytes | memoryview]:
    """The bytes of :func:`encode` as a list of pieces, large arrays as views of their memory.

    Joined, the pieces are exactly ``encode(value)``; sent one after the other (a socket, a
    file), a 100 MiB model costs no 100 MiB buffer. The pieces hold the arrays alive.
    """
    parts: list[bytes | memoryview] = []
    packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=False)
    try:
        _pack_parts(value, 0, packer, parts)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc
    _flush(packer, parts)
    return parts


def _flush(packer: msgpack.Packer, parts: list[bytes | memoryview]) -> None:
    if data := packer.bytes():
        parts.append(data)
    packer.reset()


def _pack_parts(item: Any, depth: int, packer: msgpack.Packer, parts: list[bytes | memoryview]) -> None:
    """Pack ``item`` into ``packer``, a large array as pieces of its own (a plain function, not a
    closure: a recursive closure is a reference cycle, and it kept a model alive until the GC ran)."""
    numpy = sys.modules.get("numpy")
    kind = type(item)
    if depth < _VIEW_DEPTH and kind is dict:
        packer.pack_map_header(len(item))
        for key, child in item.items():
            packer.pack(key)
            _pack_parts(child, depth + 1, packer, parts)
    elif depth < _VIEW_DEPTH and (kind is list or kind is tuple):
        packer.pack_array_header(len(item))
        for child in item:
            _pack_parts(child, depth + 1, packer, parts)
    elif numpy is not None and kind is numpy.ndarray and item.nbytes >= _VIEW_BYTES:
        header, raw = _array_parts(item)
        _flush(packer, parts)
        # ext 32 (its payload is over 64 KiB): c9, u32 length, i8 type; then header and data
        parts.append(struct.pack(">BIb", 0xC9, len(header) + len(raw), NDARRAY_EXT) + header)
        parts.append(raw)
    else:
        packer.pack(item)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode bytes from the network; raise :class:`CodecError` on anything malformed.

    Arrays in the result are read-only views into ``data``: they keep it alive, and a caller
    that passes a bytearray must not change it while they live.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise CodecError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        value = _DECODER.decode(data)
    except CodecError:
        raise
    except Exception as exc:  # DecodeError, UnicodeDecodeError, RecursionError (nesting), MemoryError...
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc
    _check_types(value)
    return value
