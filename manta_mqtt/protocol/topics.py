"""The one place that knows the MQTT topic layout of protocol v2.

Every node publishes only under topics that carry its own id, and reads only its own
assignments plus shared swarm data, so a broker ACL with ``%u``/``%c`` patterns can confine it
(see docs/protocol.md for the ACL lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .limits import ID_PATTERN, MAX_CHUNK_INDEX

ROOT = "manta/v2"
_ID = re.compile(ID_PATTERN)
_SHA = re.compile(r"[0-9a-f]{64}")
MAX_INDEX = MAX_CHUNK_INDEX  # the older name
_INDEX_DIGITS = len(str(MAX_CHUNK_INDEX))


class TopicError(ValueError):
    """A topic or id that does not fit the layout."""


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a safe topic level (no wildcards, no slashes, bounded)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise TopicError(f"invalid {what}: {value!r} (want [A-Za-z0-9_-], 1-64 chars, starting with a letter or digit)")
    return value


def check_sha(value: str) -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise TopicError(f"invalid sha256: {value!r}")
    return value


# --- builders --------------------------------------------------------------------------------


def node_status(node: str) -> str:
    return f"{ROOT}/nodes/{check_id(node, 'node id')}/status"


def node_log(node: str) -> str:
    """A node's warnings, errors and failed tasks' stderr tails (not retained, rate-limited)."""
    return f"{ROOT}/nodes/{check_id(node, 'node id')}/log"


def swarm_state(swarm: str) -> str:
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/state"


def swarm_control(swarm: str) -> str:
    """Operators' requests to a swarm's coordinator (e.g. stop); only operators may publish here."""
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/control"


def discover() -> str:
    """The coordinators' (and operators') request that every node publish its status now: retained
    statuses do not reach wildcard subscriptions on every broker, nor every member of a cluster."""
    return f"{ROOT}/discover"


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise TopicError(f"invalid chunk index: {index!r}")
    return index


def blob_chunk(swarm: str, sha: str, index: int) -> str:
    """One chunk of a swarm's blob (code, a global), published when a node asks for it."""
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/blobs/{check_sha(sha)}/{_check_index(index)}"


def blob_request(swarm: str, node: str) -> str:
    """A node's requests for chunks of the swarm's blobs (``BlobRequest``; QoS 1, not retained)."""
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/want/{check_id(node, 'node id')}"


def assignment(swarm: str, node: str) -> str:
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/assign/{check_id(node, 'node id')}"


def results(swarm: str, node: str) -> str:
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/results/{check_id(node, 'node id')}"


def upload_grant(swarm: str, node: str) -> str:
    """The coordinator's requests for a node's upload chunks (``UploadGrant``; QoS 1, not retained)."""
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/grants/{check_id(node, 'node id')}"


def upload_chunk(swarm: str, node: str, sha: str, index: int) -> str:
    base = f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/uploads/{check_id(node, 'node id')}"
    return f"{base}/{check_sha(sha)}/{_check_index(index)}"


# --- subscription filters --------------------------------------------------------------------


def all_node_status() -> str:
    return f"{ROOT}/nodes/+/status"


def all_node_logs() -> str:
    return f"{ROOT}/nodes/+/log"


def all_swarm_states() -> str:
    return f"{ROOT}/swarms/+/state"


def my_assignments(node: str) -> str:
    return f"{ROOT}/swarms/+/assign/{check_id(node, 'node id')}"


def my_grants(node: str) -> str:
    """A node's one fixed subscription for upload grants, of every swarm."""
    return f"{ROOT}/swarms/+/grants/{check_id(node, 'node id')}"


def blob_chunks(swarm: str, sha: str) -> str:
    """A fetching node's one subscription per blob, at QoS 0 (cheap on every broker)."""
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/blobs/{check_sha(sha)}/+"


def swarm_blob_requests(swarm: str) -> str:
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/want/+"


def swarm_results(swarm: str) -> str:
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/results/+"


def swarm_uploads(swarm: str) -> str:
    return f"{ROOT}/swarms/{check_id(swarm, 'swarm id')}/uploads/#"


def everything() -> str:
    return f"{ROOT}/#"


# --- parser ----------------------------------------------------------------------------------


class Kind(Enum):
    NODE_STATUS = "node_status"
    NODE_LOG = "node_log"
    SWARM_STATE = "swarm_state"
    SWARM_CONTROL = "swarm_control"
    DISCOVER = "discover"
    BLOB_CHUNK = "blob_chunk"
    BLOB_REQUEST = "blob_request"
    ASSIGNMENT = "assignment"
    RESULTS = "results"
    UPLOAD_CHUNK = "upload_chunk"
    UPLOAD_GRANT = "upload_grant"


@dataclass(frozen=True)
class Topic:
    """A parsed topic: what it is and the ids it carries."""

    kind: Kind
    swarm: str | None = None
    node: str | None = None
    sha: str | None = None
    index: int | None = None


def _index(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > _INDEX_DIGITS:
        raise TopicError(f"invalid chunk index: {text!r}")
    return int(text)


def parse(topic: str) -> Topic:
    """Parse a topic of protocol v2; raise :class:`TopicError` for anything else."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"not a {ROOT} topic: {topic!r}")
    parts = topic[len(prefix) :].split("/")
    match parts:
        case ["discover"]:
            return Topic(Kind.DISCOVER)
        case ["nodes", node, "status"]:
            return Topic(Kind.NODE_STATUS, node=check_id(node, "node id"))
        case ["nodes", node, "log"]:
            return Topic(Kind.NODE_LOG, node=check_id(node, "node id"))
        case ["swarms", swarm, "state"]:
            return Topic(Kind.SWARM_STATE, swarm=check_id(swarm, "swarm id"))
        case ["swarms", swarm, "control"]:
            return Topic(Kind.SWARM_CONTROL, swarm=check_id(swarm, "swarm id"))
        case ["swarms", swarm, "blobs", sha, index]:
            return Topic(
                Kind.BLOB_CHUNK,
                swarm=check_id(swarm, "swarm id"),
                sha=check_sha(sha),
                index=_index(index),
            )
        case ["swarms", swarm, "want", node]:
            return Topic(Kind.BLOB_REQUEST, swarm=check_id(swarm, "swarm id"), node=check_id(node, "node id"))
        case ["swarms", swarm, "assign", node]:
            return Topic(Kind.ASSIGNMENT, swarm=check_id(swarm, "swarm id"), node=check_id(node))
        case ["swarms", swarm, "results", node]:
            return Topic(Kind.RESULTS, swarm=check_id(swarm, "swarm id"), node=check_id(node))
        case ["swarms", swarm, "grants", node]:
            return Topic(Kind.UPLOAD_GRANT, swarm=check_id(swarm, "swarm id"), node=check_id(node, "node id"))
        case ["swarms", swarm, "uploads", node, sha, index]:
            return Topic(
                Kind.UPLOAD_CHUNK,
                swarm=check_id(swarm, "swarm id"),
                node=check_id(node, "node id"),
                sha=check_sha(sha),
                index=_index(index),
            )
    raise TopicError(f"unknown topic: {topic!r}")
