"""Every message of protocol v2: typed dataclasses with a ``to_bytes`` and a validating ``parse``.

Data messages are msgpack (see :mod:`manta_mqtt.protocol.codec`); the two retained status
messages are JSON so that ``mosquitto_sub`` and MQTT Explorer show them as text. ``parse``
raises :class:`ProtocolError` for anything that is not exactly a v2 message: callers log it,
count it and drop it.

By purpose: ``fields`` (version, error, field readers), ``status`` (JSON, retained), ``control``
(JSON, an operator's request to a coordinator), ``log`` (JSON, a node's log record), ``blobs``
(blob requests and chunks), ``grants`` (the coordinator's requests for upload chunks), ``work``
(assignments and result envelopes). Import from here.
"""

from __future__ import annotations

from .blobs import BlobRequest, Chunk
from .control import ControlCommand, SwarmControl
from .fields import VERSION, ProtocolError
from .grants import UploadGrant
from .log import LogLevel, NodeLog
from .status import Discover, NodeState, NodeStatus, SwarmState
from .work import Assignment, BlobRef, CodeRef, GlobalRefs, ResultEnvelope, RunStatus, Signature, Value

__all__ = [
    "VERSION",
    "Assignment",
    "BlobRef",
    "BlobRequest",
    "Chunk",
    "CodeRef",
    "ControlCommand",
    "Discover",
    "GlobalRefs",
    "LogLevel",
    "NodeLog",
    "NodeState",
    "NodeStatus",
    "ProtocolError",
    "ResultEnvelope",
    "RunStatus",
    "Signature",
    "SwarmControl",
    "SwarmState",
    "UploadGrant",
    "Value",
]
