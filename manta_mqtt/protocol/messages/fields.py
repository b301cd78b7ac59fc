"""What every v2 message shares: the version, the error, and strict field readers.

``parse`` methods raise :class:`ProtocolError` for anything that is not exactly a v2 message;
these helpers are why: each reads one field and refuses a missing key, a wrong type (``True``
is not a number here), or an id, sha256 or number out of range.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from .. import codec
from ..topics import TopicError, check_id, check_sha

VERSION = 2
T = TypeVar("T")


class ProtocolError(ValueError):
    """A message that is malformed, of the wrong version, or inconsistent."""


def _get(data: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise ProtocolError(f"missing field {key!r}")
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(f"field {key!r}: expected {kind}, got bool")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {key!r}: expected {kind}, got {type(value).__name__}")
    return value


def _nonneg(data: dict[str, Any], key: str, default: Any = ...) -> int:
    value = _get(data, key, int, default)
    if value < 0:
        raise ProtocolError(f"field {key!r} must be >= 0")
    return int(value)


def _id(data: dict[str, Any], key: str) -> str:
    try:
        return check_id(_get(data, key, str), key)
    except TopicError as exc:
        raise ProtocolError(str(exc)) from exc


def _sha(value: Any, key: str) -> str:
    try:
        return check_sha(value)
    except TopicError as exc:
        raise ProtocolError(f"field {key!r}: {exc}") from exc


def _finite(data: dict[str, Any], key: str, default: Any = ...) -> float:
    value = _get(data, key, (int, float), default)
    try:
        number = float(value)
    except OverflowError as exc:
        raise ProtocolError(f"field {key!r} is out of range") from exc
    if not math.isfinite(number) or number < 0:
        raise ProtocolError(f"field {key!r} must be a finite number >= 0")
    return number


def _metrics(values: dict[Any, Any]) -> dict[str, float]:
    """Finite numeric metrics only: JSON cannot carry NaN or infinity."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            number = float(value)
        except OverflowError:
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


def _choice(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value: str = _get(data, key, str)
    if value not in allowed:
        raise ProtocolError(f"unknown {key} {value!r} (expected one of {', '.join(allowed)})")
    return value


def _str_list(data: dict[str, Any], key: str, default: Any = ...) -> list[str]:
    values = _get(data, key, list, default)
    if not all(isinstance(v, str) for v in values):
        raise ProtocolError(f"field {key!r} must be a list of strings")
    return list(values)


def _load_msgpack(payload: bytes) -> dict[str, Any]:
    try:
        data = codec.decode(payload)
    except codec.CodecError as exc:
        raise ProtocolError(str(exc)) from exc
    return _check_version(data)


def _load_json(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from exc
    return _check_version(data)


def _check_version(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a map, got {type(data).__name__}")
    version = data.get("v")
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"unsupported schema version {version!r} (this side speaks {VERSION})")
    return data
