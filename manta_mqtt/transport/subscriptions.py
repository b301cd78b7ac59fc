"""A link's subscriptions and the broker's answers to them, as plain bookkeeping (no I/O).

paho sends SUBSCRIBE and hands back SUBACK reason codes, and ignores them; a broker at its
subscription limit (NATS) or behind an ACL refuses with nothing but that code. This records
which filters each request carried, so a refusal names its filters, and what the link holds,
so a reconnection without session restores it. The caller (``MqttLink``) locks around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..protocol.limits import MAX_AWAITED_SUBACKS


class SubscriptionBook:
    def __init__(self) -> None:
        self.filters: dict[str, int] = {}  # held: filter -> QoS
        self.refused_count = 0
        self.refusal = ""  # the latest refusal, in words
        self._sent: dict[int, list[str]] = {}  # mid -> its filters, until its SUBACK
        self._answers: dict[int, str] = {}  # mid -> "" (granted) or the refusal, oldest first

    def hold(self, filters: Iterable[str], qos: int) -> None:
        for f in filters:
            self.filters[f] = qos

    def drop(self, filters: Iterable[str]) -> None:
        for f in filters:
            self.filters.pop(f, None)

    def sent(self, mid: int, filters: Sequence[str]) -> None:
        self._sent[mid] = list(filters)
        _bound(self._sent)

    def answered(self, mid: int, codes: Sequence[Any]) -> tuple[list[str], str]:
        """Read a SUBACK (codes with ``is_failure``, as paho gives them): the refused filters, and
        them with their reasons ("" if none). :meth:`record` makes it the request's answer."""
        filters = self._sent.pop(mid, [])
        refused = [(f, str(code)) for f, code in zip(filters, codes, strict=False) if code.is_failure]
        text = ", ".join(f"{f} ({reason})" for f, reason in refused)
        if refused:
            self.refused_count += len(refused)
            self.refusal = f"the broker refused the subscription to {text}"
        return [f for f, _ in refused], text

    def record(self, mid: int, answer: str) -> None:
        self._answers[mid] = answer
        _bound(self._answers)

    def answer(self, mid: int) -> str | None:
        """Take the answer to ``mid``: None before its SUBACK, "" if granted, else the refusal."""
        return self._answers.pop(mid, None)

    def has_answer(self, mid: int) -> bool:
        return mid in self._answers


def _bound(table: dict[int, Any]) -> None:
    if len(table) > MAX_AWAITED_SUBACKS:  # nobody waited for the oldest: forget it, keep the newest
        del table[next(iter(table))]
