"""The work messages: an assignment to a node, and the result envelope it sends back.

An assignment refers to code and globals by sha256 (blobs the node fetches once and caches); an
envelope carries what the task produced, each value inline or, when large, by reference to an
upload (:class:`BlobRef`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast, get_args

from .. import codec
from ..limits import MAX_BLOB_BYTES, MAX_TASK_TIMEOUT_SECONDS
from .fields import VERSION, ProtocolError, _choice, _finite, _get, _id, _load_msgpack, _nonneg, _sha, _str_list

RunStatus = Literal["ok", "failed"]  # how a task run ended

#: The words for globals, kept apart: a swarm's *global refs* map each tag to the sha256 of the
#: encoded value it holds now (what assignments carry); a task's *global writes* map tags to the
#: encoded values it set (what result envelopes carry); the *initial globals* of a ``Swarm`` are
#: plain Python values, encoded once when the run starts.
GlobalRefs = dict[str, str]


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
    """Run task ``task`` of ``swarm`` for ``iteration`` on the addressed node.

    ``signature``: the swarm owner's, for the addressed node (:mod:`..signing`); wire key ``sig``,
    present only on signed assignments.

    ``sizes``: the size in bytes of each blob it refers to (code and globals), by sha256, so a
    node refuses a blob meta or chunk that declares another size before it fetches anything;
    covered by the signature. Omitted from the wire when empty (a coordinator that does not
    announce sizes); a node then checks only the sha256 of what it reassembled.
    """

    swarm: str
    iteration: int
    task: str
    attempt: int
    code: CodeRef
    global_refs: GlobalRefs  # wire key "globals"
    datasets: list[str]
    timeout: float
    signature: Signature | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def _fields(self) -> dict[str, Any]:
        sizes = {"sizes": dict(sorted(self.sizes.items()))} if self.sizes else {}
        return {
            "v": VERSION,
            "swarm": self.swarm,
            "iteration": self.iteration,
            "task": self.task,
            "attempt": self.attempt,
            "code": self.code.to_dict(),
            "globals": self.global_refs,
            "datasets": self.datasets,
            "timeout": self.timeout,
        } | sizes

    def to_bytes(self) -> bytes:
        fields = self._fields()
        if self.signature is not None:
            fields["sig"] = {"key": self.signature.key, "ed25519": self.signature.ed25519}
        return codec.encode(fields)

    def unsigned_bytes(self) -> bytes:
        """What a signature covers: every field but the signature, in one canonical encoding
        (the timeout as a float, however it was written), so a node re-encoding what it parsed
        gets the same bytes as the coordinator that signed."""
        return codec.encode(self._fields() | {"timeout": float(self.timeout)})

    def with_signature(self, signature: Signature) -> Assignment:
        return dataclasses.replace(self, signature=signature)

    def with_sizes(self, sizes: dict[str, int]) -> Assignment:
        return dataclasses.replace(self, sizes=dict(sizes))

    @property
    def blobs(self) -> list[str]:
        """The sha256 of every blob it needs: its code, then its globals."""
        return [self.code.sha, *self.global_refs.values()]

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
        if not 0 < timeout <= MAX_TASK_TIMEOUT_SECONDS:
            raise ProtocolError(f"timeout {timeout} out of range")
        code = CodeRef.from_dict(_get(data, "code", dict))
        sizes = _sizes(_get(data, "sizes", dict, {}), {code.sha, *globals_.values()})
        return cls(
            swarm=_id(data, "swarm"),
            iteration=_nonneg(data, "iteration"),
            task=_id(data, "task"),
            attempt=_nonneg(data, "attempt", 0),
            code=code,
            global_refs=dict(globals_),
            datasets=_str_list(data, "datasets", []),
            timeout=float(timeout),
            signature=Signature.from_wire(data["sig"]) if "sig" in data else None,
            sizes=sizes,
        )


def _sizes(data: dict[Any, Any], blobs: set[str]) -> dict[str, int]:
    """Announced blob sizes: only for blobs the assignment refers to, each within ``MAX_BLOB_BYTES``."""
    out: dict[str, int] = {}
    for sha, size in data.items():
        if not isinstance(sha, str) or sha not in blobs:
            raise ProtocolError("sizes: a key is not a blob of this assignment")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_BLOB_BYTES:
            raise ProtocolError(f"sizes.{sha[:12]}: not a size in [0, MAX_BLOB_BYTES]")
        out[sha] = size
    return out


@dataclass(frozen=True)
class Signature:
    """An Ed25519 signature (64 bytes) by the key named ``key`` (16 hex digits)."""

    key: str
    ed25519: bytes

    @classmethod
    def from_wire(cls, data: Any) -> Signature:
        if not isinstance(data, dict):
            raise ProtocolError("field 'sig' must be a map")
        key, sig = _get(data, "key", str), _get(data, "ed25519", bytes)
        if len(key) != 16 or any(c not in "0123456789abcdef" for c in key):
            raise ProtocolError("sig.key must be 16 lowercase hex digits")
        if len(sig) != 64:
            raise ProtocolError(f"sig.ed25519 must be 64 bytes, not {len(sig)}")
        return cls(key, bytes(sig))


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
    status: RunStatus
    results: dict[str, Value] = field(default_factory=dict)
    global_writes: dict[str, Value] = field(default_factory=dict)
    schedule: list[tuple[str, list[str]]] = field(default_factory=list)  # (alias, node ids)
    stop: bool = False
    error: str = ""
    duration: float = 0.0

    STATUSES: ClassVar[tuple[RunStatus, ...]] = get_args(RunStatus)

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
        status = cast(RunStatus, _choice(data, "status", cls.STATUSES))
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
