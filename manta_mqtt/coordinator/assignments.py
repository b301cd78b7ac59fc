"""Assignments as they go on the wire: sized, signed for their node, encoded once."""

from __future__ import annotations

from ..blobstore import BlobStore
from ..protocol.messages import Assignment
from ..protocol.signing import OwnerKey


class AssignmentEncoder:
    """The bytes of the engine's current assignment for each node.

    Each carries the size of every blob it needs (a node refuses a blob declaring another size)
    and is signed for its node when there is a key. An assignment sent again (the node came
    back) is the same object, so it is neither signed nor encoded twice. Main thread only.
    """

    def __init__(self, blobs: BlobStore, owner_key: OwnerKey | None) -> None:
        self._blobs = blobs
        self._owner_key = owner_key
        self._assignment: Assignment | None = None  # the last one asked for
        self._sized: Assignment | None = None  # the same, with its blob sizes
        self._encodings: dict[str, bytes] = {}  # its encoding per node

    def encode(self, assignment: Assignment, node: str) -> bytes:
        if assignment is not self._assignment:
            self._assignment, self._encodings = assignment, {}
            self._sized = assignment.with_sizes(self._blobs.sizes(assignment.blobs))
        if node not in self._encodings:
            sized = self._sized
            assert sized is not None
            self._encodings[node] = (self._owner_key.sign(node, sized) if self._owner_key else sized).to_bytes()
        return self._encodings[node]
