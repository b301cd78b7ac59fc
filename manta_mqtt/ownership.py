"""One owner per mutable thing: a structure that is not thread-safe names the thread that owns it,
and every other thread must hand data over through a queue.

:class:`Owner` makes that rule checkable: the first thread that touches the structure becomes
its owner, and a call from any other thread raises :class:`WrongThread` at once. A race that
would corrupt state one run in a thousand becomes an error on the first wrong call, in tests
and in production alike. The check is one ``get_ident()`` comparison.
"""

from __future__ import annotations

import threading


class WrongThread(RuntimeError):
    """A structure was touched by a thread that does not own it: a bug, never a network fault."""


class Owner:
    """The thread that owns one structure; ``name`` says which structure, in the error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ident: int | None = None
        self._thread = ""

    def check(self) -> None:
        """Raise :class:`WrongThread` unless called on the owning thread (the first caller)."""
        ident = threading.get_ident()
        if self._ident is None:
            self._ident = ident
            self._thread = threading.current_thread().name
        elif ident != self._ident:
            raise WrongThread(
                f"{self.name} is owned by thread {self._thread!r}, "
                f"not {threading.current_thread().name!r}: hand data over through a queue"
            )

    def release(self) -> None:
        """Forget the owner (the structure moves to another thread, e.g. after a join)."""
        self._ident = None
        self._thread = ""
