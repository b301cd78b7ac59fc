"""Every message of protocol v1: typed dataclasses with a ``to_bytes`` and a validating ``parse``.

Data messages are msgpack (see :mod:`manta_mqtt.protocol.codec`); the two retained status
messages are JSON so that ``mosquitto_sub`` and MQTT Explorer show them as text. ``parse``
raises :class:`ProtocolError` for anything that is not exactly a v1 message: callers log it,
count it and drop it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from . import codec
from .chunking import MIN_CHUNK_SIZE, BlobInfo
from .topics import TopicError, check_id, check_sha

VERSION = 1
T = TypeVar("T")

#: The words for globals, kept apart: a swarm's *global refs* map each tag to the sha256 of the
#: encoded value it holds now (what assignments carry); a task's *global writes* map tags to the
#: encoded values it set (what result envelopes carry); the *initial globals* of a ``Swarm`` are
#: plain Python values, encoded once when the run starts.
GlobalRefs = dict[str, str]


class ProtocolError(ValueError):
    """A message that is malformed, of the wrong version, or inconsistent."""


# --- validation helpers ----------------------------------------------------------------------


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


# --- status messages (JSON, retained) --------------------------------------------------------


@dataclass
class NodeStatus:
    """A node's retained status; its will message is the same with ``state="offline"``."""

    node: str
    state: str  # "online" | "busy" | "offline"
    datasets: list[str] = field(default_factory=list)
    session: int = 0  # start time in ms: tells a restart from a reconnect
    running: str | None = None  # "swarm/iteration/task" while busy
    rejected: dict[str, int] = field(default_factory=dict)
    agent: str = ""

    STATES = ("online", "busy", "offline")

    def to_bytes(self) -> bytes:
        return json.dumps({"v": VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def parse(cls, payload: bytes) -> NodeStatus:
        data = _load_json(payload)
        state = _choice(data, "state", cls.STATES)
        rejected = _get(data, "rejected", dict, {})
        return cls(
            node=_id(data, "node"),
            state=state,
            datasets=_str_list(data, "datasets", []),
            session=_nonneg(data, "session", 0),
            running=_get(data, "running", (str, type(None)), None),
            rejected={str(k): int(v) for k, v in rejected.items() if isinstance(v, int)},
            agent=_get(data, "agent", str, ""),
        )


@dataclass
class SwarmState:
    """The coordinator's retained view of a swarm, for nodes and for people watching."""

    swarm: str
    name: str
    state: str  # "running" | "stopped" | "completed" | "failed"
    iteration: int = 0
    step: str = ""
    done: int = 0
    expected: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    STATES = ("running", "stopped", "completed", "failed")
    TERMINAL = ("stopped", "completed", "failed")

    @property
    def terminal(self) -> bool:
        return self.state in self.TERMINAL

    def to_bytes(self) -> bytes:
        fields = asdict(self) | {"metrics": _metrics(self.metrics)}
        return json.dumps({"v": VERSION, **fields}, sort_keys=True, allow_nan=False).encode()

    @classmethod
    def parse(cls, payload: bytes) -> SwarmState:
        data = _load_json(payload)
        state = _choice(data, "state", cls.STATES)
        metrics = _get(data, "metrics", dict, {})
        return cls(
            swarm=_id(data, "swarm"),
            name=_get(data, "name", str, ""),
            state=state,
            iteration=_nonneg(data, "iteration", 0),
            step=_get(data, "step", str, ""),
            done=_nonneg(data, "done", 0),
            expected=_nonneg(data, "expected", 0),
            metrics=_metrics(metrics),
            reason=_get(data, "reason", str, ""),
        )


# --- blobs ------------------------------------------------------------------------------------


def _blob_info(data: dict[str, Any]) -> BlobInfo:
    info = BlobInfo(
        sha=_sha(_get(data, "sha", str), "sha"),
        size=_nonneg(data, "size"),
        chunk_size=_nonneg(data, "chunk_size"),
    )
    if info.chunk_size < MIN_CHUNK_SIZE:
        raise ProtocolError(f"chunk_size {info.chunk_size} is below {MIN_CHUNK_SIZE}")
    return info


def _info_fields(info: BlobInfo) -> dict[str, Any]:
    return {"sha": info.sha, "size": info.size, "chunk_size": info.chunk_size}


@dataclass
class BlobMeta:
    """Retained at ``blobs/{sha}``; a blob that fits in one chunk travels inline here."""

    info: BlobInfo
    inline: bytes | None = None

    def to_bytes(self) -> bytes:
        return codec.encode({"v": VERSION, **_info_fields(self.info), "inline": self.inline})

    @classmethod
    def parse(cls, payload: bytes) -> BlobMeta:
        data = _load_msgpack(payload)
        info = _blob_info(data)
        inline = _get(data, "inline", (bytes, type(None)), None)
        if inline is not None and len(inline) != info.size:
            raise ProtocolError("inline blob size does not match its meta")
        return cls(info, inline)


@dataclass
class Chunk:
    """One piece of a blob (retained under ``blobs/``, or QoS 1 under ``uploads/``)."""

    info: BlobInfo
    index: int
    data: bytes | memoryview

    def to_bytes(self) -> bytes:
        return codec.encode({"v": VERSION, **_info_fields(self.info), "index": self.index, "data": bytes(self.data)})

    @classmethod
    def parse(cls, payload: bytes) -> Chunk:
        data = _load_msgpack(payload)
        info = _blob_info(data)
        index = _nonneg(data, "index")
        if index >= info.count:
            raise ProtocolError(f"chunk index {index} out of range (count {info.count})")
        return cls(info, index, _get(data, "data", bytes))


# --- work ------------------------------------------------------------------------------------


@dataclass
class CodeRef:
    """A code bundle: the zip's sha256 and the importable name whose ``main()`` runs."""

    sha: str
    entry: str

    def to_dict(self) -> dict[str, Any]:
        return {"sha": self.sha, "entry": self.entry}

    @classmethod
    def from_dict(cls, data: Any) -> CodeRef:
        if not isinstance(data, dict):
            raise ProtocolError("field 'code' must be a map")
        entry = _get(data, "entry", str)
        if not entry.isidentifier():
            raise ProtocolError(f"code entry {entry!r} is not an identifier")
        return cls(sha=_sha(_get(data, "sha", str), "code.sha"), entry=entry)


@dataclass
class Assignment:
    """Run task ``task`` of ``swarm`` for ``iteration`` on the addressed node."""

    swarm: str
    iteration: int
    task: str
    attempt: int
    code: CodeRef
    global_refs: GlobalRefs  # wire key "globals"
    datasets: list[str]
    timeout: float

    def to_bytes(self) -> bytes:
        return codec.encode(
            {
                "v": VERSION,
                "swarm": self.swarm,
                "iteration": self.iteration,
                "task": self.task,
                "attempt": self.attempt,
                "code": self.code.to_dict(),
                "globals": self.global_refs,
                "datasets": self.datasets,
                "timeout": self.timeout,
            }
        )

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.swarm, self.iteration, self.task)

    @classmethod
    def parse(cls, payload: bytes) -> Assignment:
        data = _load_msgpack(payload)
        globals_ = _get(data, "globals", dict)
        for tag, sha in globals_.items():
            if not isinstance(tag, str):
                raise ProtocolError("global tags must be strings")
            _sha(sha, f"globals.{tag}")
        timeout = _finite(data, "timeout")
        if not 0 < timeout <= 7 * 24 * 3600:
            raise ProtocolError(f"timeout {timeout} out of range")
        return cls(
            swarm=_id(data, "swarm"),
            iteration=_nonneg(data, "iteration"),
            task=_id(data, "task"),
            attempt=_nonneg(data, "attempt", 0),
            code=CodeRef.from_dict(_get(data, "code", dict)),
            global_refs=dict(globals_),
            datasets=_str_list(data, "datasets", []),
            timeout=float(timeout),
        )


@dataclass
class BlobRef:
    """A value too large to travel inline: it was uploaded as chunks of blob ``sha``."""

    sha: str
    size: int


Value = bytes | BlobRef  # an encoded value, inline or by reference


def _values_to_wire(values: dict[str, Value]) -> dict[str, Any]:
    return {tag: ({"blob": v.sha, "size": v.size} if isinstance(v, BlobRef) else v) for tag, v in values.items()}


def _values_from_wire(data: Any, key: str) -> dict[str, Value]:
    if not isinstance(data, dict):
        raise ProtocolError(f"field {key!r} must be a map")
    out: dict[str, Value] = {}
    for tag, value in data.items():
        if not isinstance(tag, str) or not tag:
            raise ProtocolError(f"{key}: tags must be non-empty strings")
        if isinstance(value, bytes):
            out[tag] = value
        elif isinstance(value, dict):
            out[tag] = BlobRef(_sha(_get(value, "blob", str), f"{key}.{tag}"), _nonneg(value, "size"))
        else:
            raise ProtocolError(f"{key}.{tag}: expected bytes or a blob reference")
    return out


@dataclass
class ResultEnvelope:
    """Everything one task run on one node produced, published atomically after its uploads.

    ``results`` and ``global_writes`` (wire key ``globals``: the globals the task set) map tags
    to msgpack-encoded values, inline or by blob reference; ``schedule`` and ``stop`` carry the
    task's control requests.
    """

    swarm: str
    iteration: int
    task: str
    node: str
    attempt: int
    status: str  # "ok" | "failed"
    results: dict[str, Value] = field(default_factory=dict)
    global_writes: dict[str, Value] = field(default_factory=dict)
    schedule: list[tuple[str, list[str]]] = field(default_factory=list)  # (alias, node ids)
    stop: bool = False
    error: str = ""
    duration: float = 0.0

    STATUSES = ("ok", "failed")

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.swarm, self.iteration, self.task, self.node)

    def to_bytes(self) -> bytes:
        return codec.encode(
            {
                "v": VERSION,
                "swarm": self.swarm,
                "iteration": self.iteration,
                "task": self.task,
                "node": self.node,
                "attempt": self.attempt,
                "status": self.status,
                "results": _values_to_wire(self.results),
                "globals": _values_to_wire(self.global_writes),
                "schedule": [[alias, ids] for alias, ids in self.schedule],
                "stop": self.stop,
                "error": self.error,
                "duration": self.duration,
            }
        )

    @classmethod
    def parse(cls, payload: bytes) -> ResultEnvelope:
        data = _load_msgpack(payload)
        status = _choice(data, "status", cls.STATUSES)
        schedule: list[tuple[str, list[str]]] = []
        for item in _get(data, "schedule", list, []):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise ProtocolError("schedule entries must be [alias, [node ids]]")
            ids = item[1]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ProtocolError("schedule node ids must be strings")
            schedule.append((item[0], list(ids)))
        return cls(
            swarm=_id(data, "swarm"),
            iteration=_nonneg(data, "iteration"),
            task=_id(data, "task"),
            node=_id(data, "node"),
            attempt=_nonneg(data, "attempt", 0),
            status=status,
            results=_values_from_wire(_get(data, "results", dict, {}), "results"),
            global_writes=_values_from_wire(_get(data, "globals", dict, {}), "globals"),
            schedule=schedule,
            stop=_get(data, "stop", bool, False),
            error=_get(data, "error", str, ""),
            duration=_finite(data, "duration", 0.0),
        )
