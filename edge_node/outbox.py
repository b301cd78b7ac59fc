"""Store and forward: every result goes to disk before it goes to the broker.

``pending/`` holds results not yet acknowledged by the broker; they are (re)sent whenever the
link is up, so a result produced while Wi-Fi is down, or before a crash of the agent, is not
lost. ``sent/`` keeps the last results delivered, so that an assignment seen again (a resumed
coordinator asks once more) is answered from disk instead of being recomputed. Delivery is at
least once; the coordinator is idempotent on (swarm, iteration, task, node).

Results are the node's data: folders are 0700 and files 0600, whatever the umask.

Not thread-safe: one thread (the agent's worker) owns an outbox, and every method checks it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from manta_mqtt.blobstore import PRIVATE_FILE, private_dir
from manta_mqtt.ownership import Owner
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.limits import OUTBOX_KEEP_SENT

Key = tuple[str, int, str, int]  # swarm, iteration, task, attempt


@dataclass
class Entry:
    key: Key
    envelope: bytes  # the encoded ResultEnvelope
    uploads: list[str]  # shas of large values, in the node's blob cache, to upload first

    @property
    def name(self) -> str:
        swarm, iteration, task, attempt = self.key
        return f"{swarm}__{iteration}__{task}__{attempt}"


class Outbox:
    def __init__(self, root: Path, keep_sent: int = OUTBOX_KEEP_SENT) -> None:
        self.owner = Owner("outbox")
        self.pending_dir = root / "pending"
        self.sent_dir = root / "sent"
        private_dir(self.pending_dir)
        private_dir(self.sent_dir)
        self.keep_sent = keep_sent

    def put(self, entry: Entry) -> None:
        """Durably record a result to send (atomic: a crash leaves it whole or absent)."""
        self.owner.check()
        data = codec.encode({"key": list(entry.key), "envelope": entry.envelope, "uploads": entry.uploads})
        fd, tmp = tempfile.mkstemp(dir=self.pending_dir, prefix=".tmp-")
        os.fchmod(fd, PRIVATE_FILE)  # mkstemp asks for 0600, minus the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.pending_dir / entry.name)

    def pending(self) -> list[Entry]:
        self.owner.check()
        files = sorted(p for p in self.pending_dir.iterdir() if p.is_file())
        return [e for e in (self._load(p) for p in files) if e is not None]

    def held(self) -> list[Entry]:
        """Every result on disk, pending and sent (their uploads may still be pulled)."""
        self.owner.check()
        files = [p for folder in (self.pending_dir, self.sent_dir) for p in sorted(folder.iterdir()) if p.is_file()]
        return [e for e in (self._load(p) for p in files) if e is not None]

    def find(self, key: Key) -> Entry | None:
        """The result already produced for ``key``, pending or sent."""
        self.owner.check()
        name = Entry(key, b"", []).name
        for folder in (self.pending_dir, self.sent_dir):
            path = folder / name
            if path.is_file():
                return self._load(path)
        return None

    def mark_sent(self, entry: Entry) -> None:
        self.owner.check()
        source = self.pending_dir / entry.name
        if source.exists():
            os.replace(source, self.sent_dir / entry.name)
        sent = sorted(self.sent_dir.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in sent[: max(0, len(sent) - self.keep_sent)]:
            old.unlink(missing_ok=True)

    @staticmethod
    def _load(path: Path) -> Entry | None:
        if path.name.startswith(".tmp-"):
            return None
        try:
            data = codec.decode(path.read_bytes())
            swarm, iteration, task, attempt = data["key"]
            return Entry((str(swarm), int(iteration), str(task), int(attempt)), data["envelope"], list(data["uploads"]))
        except (OSError, codec.CodecError, KeyError, TypeError, ValueError):
            path.unlink(missing_ok=True)  # a damaged entry cannot be sent; do not retry it forever
            return None
