"""Which member of a broker cluster a link uses, and how long it waits before trying another.

Plain bookkeeping (no I/O) for :class:`.connection.Connection`, which explains the policy.
"""

from __future__ import annotations

from .address import BrokerAddress

#: Seconds between reconnection attempts: to a member not yet tried in this round, and at most.
NEXT_MEMBER_WAIT, MAX_WAIT = 1, 30
#: Seconds a member gets to answer (TCP, TLS, CONNACK) in the first round of reconnections; it
#: doubles per round, so that a slow but working cluster is waited for in the end. A NATS member
#: that a client reaches while JetStream elects a new leader (its peer died) never answers that
#: connection, and answers a new one at once afterwards: hence short waits and fresh attempts.
ANSWER_WAIT = 1.5
PAHO_CONNECT_TIMEOUT = 5.0


class Members:
    """The brokers of an address, the one in use, and how long to wait before trying another."""

    def __init__(self, address: BrokerAddress) -> None:
        self.address = address
        self.index = 0
        self.attempts = 0  # paho's reconnection attempts since the latest CONNACK
        self.heard = False  # a member of the current round took the connection (alive, if slow)

    @property
    def several(self) -> bool:
        return len(self.address.hosts) > 1

    @property
    def current(self) -> BrokerAddress:
        return self.address.at(self.index)

    @property
    def server(self) -> str:
        return self.address.servers[self.index]

    def step(self) -> BrokerAddress:
        """The next member (the first after the last)."""
        self.index = (self.index + 1) % len(self.address.hosts)
        return self.current

    def retry(self) -> BrokerAddress:
        """The member of the next reconnection attempt (the lost one is the last of a round)."""
        self.attempts += 1
        return self.step()

    def wait(self, *, silent: bool = False) -> int:
        """Seconds to wait after the current attempt if it fails.

        A round is one attempt at each member: within it the next member is tried 1 s later,
        since it may well be up, or at once after a member that did not answer (``silent``: its
        time is spent already); after a whole round failed, the wait doubles per round (2, 4,
        ... 30 s), as paho's own back-off does for a single broker, unless a member of the round
        took the connection without answering: it is up (a NATS member while JetStream elects a
        leader), so the next round starts 1 s later.
        """
        rounds, within = divmod(self.attempts, len(self.address.hosts))
        self.heard = self.heard or silent
        if within:
            return 0 if silent else NEXT_MEMBER_WAIT
        heard, self.heard = self.heard, False
        if heard:  # a member is up, busy (electing a leader): try again soon, not after a back-off
            return NEXT_MEMBER_WAIT
        return min(1 << rounds, MAX_WAIT)

    def answer_wait(self) -> float:
        """Seconds the current attempt's member gets to answer: 1.5 s in the first round, doubling."""
        return ANSWER_WAIT * (1 << (self.attempts - 1) // len(self.address.hosts))

    def connected(self) -> None:
        self.attempts, self.heard = 0, False
