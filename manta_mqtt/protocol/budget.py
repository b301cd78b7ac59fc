"""Bytes held for each sender and for all together, each under a ceiling.

What lets one node fill its share of a buffer and no more, while the total protects the process
when many nodes (or forged node ids) send at once. Not thread-safe: its owner locks if needed.
"""

from __future__ import annotations

from collections import Counter


class SenderBudget:
    def __init__(self, *, per_sender: int, total: int) -> None:
        self.per_sender = per_sender
        self.total = total
        self._held: Counter[str] = Counter()
        self.held_total = 0

    def held_by(self, sender: str) -> int:
        return self._held[sender]

    def refusal(self, sender: str, size: int) -> str | None:
        """Why ``size`` more bytes from ``sender`` do not fit, or ``None`` if they do."""
        if self._held[sender] + size > self.per_sender:
            return f"{sender} would hold more than {self.per_sender} bytes"
        if self.held_total + size > self.total:
            return f"all senders together would hold more than {self.total} bytes"
        return None

    def take(self, sender: str, size: int) -> str | None:
        """Charge ``size`` bytes to ``sender`` if they fit; else return why not, charging nothing."""
        why = self.refusal(sender, size)
        if why is None:
            self._held[sender] += size
            self.held_total += size
        return why

    def give_back(self, sender: str, size: int) -> None:
        self._held[sender] -= size
        self.held_total -= size
        if self._held[sender] <= 0:  # the counter stays as small as the senders holding bytes
            del self._held[sender]
