"""``manta-mqtt logs [NODE]``: nodes' warnings, errors and failed tasks' tails, as they arrive.

Nodes publish them on ``nodes/{node}/log``, not retained: this shows what is sent while it
listens (``--seconds``, or until Ctrl-C with ``--follow``), plus what a node queued while it was
offline and sends when it is back (``--since`` leaves out the old ones). Everything a node wrote
is shown through ``printable()``: a node chooses its text, not what the operator's terminal does.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable

import click

from ..protocol import topics
from ..protocol.messages import NodeLog, ProtocolError
from ..protocol.text import printable
from ..stopping import stop_on_signals
from ..tools import fleet
from ..transport.mqtt import BrokerAddress
from .connect import VERSION_CHOICE, VERSION_HELP, broker_options

RANK: dict[str, int] = {level: rank for rank, level in enumerate(NodeLog.LEVELS)}


def format_record(record: NodeLog) -> str:
    """One line (time, node, level, logger, message), then the tail, indented."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.time))
    line = printable(f"{when} {record.node} {record.level.upper()} {record.logger}: {record.message}", one_line=True)
    if record.dropped:
        line += f"  [{record.dropped} earlier record(s) not sent]"
    tail = [f"    {text}" for text in printable(record.tail).splitlines()] if record.tail else []
    return "\n".join([line, *tail])


def wanted(record: NodeLog, topic_node: str | None, level: str, since: float | None, now: float) -> bool:
    """A record of the node its topic names, at ``level`` or above, and recent enough."""
    if record.node != topic_node or RANK[record.level] < RANK[level]:
        return False
    return since is None or record.time >= now - since


def listen(
    address: BrokerAddress,
    version: str,
    node: str | None,
    stop: threading.Event,
    emit: Callable[[str], None],
    *,
    level: str = "warning",
    since: float | None = None,
    ready: Callable[[str], None] = lambda _filter: None,
) -> int:
    """Show (through ``emit``) the records that arrive until ``stop`` is set; how many were shown.

    The network thread only queues what arrives; this thread parses, filters and prints.
    """
    arrived: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=10_000)
    topic_filter = topics.node_log(node) if node else topics.all_node_logs()

    def on_message(topic: str, payload: bytes, _retained: bool) -> None:
        with contextlib.suppress(queue.Full):  # a reader that cannot keep up loses lines, not memory
            arrived.put_nowait((topic, payload))

    shown = 0
    with fleet.connected(address, version, "logs") as link:
        link.route(topic_filter, on_message)
        if not link.subscribe(topic_filter, qos=0, wait=10):
            raise ConnectionError(f"the broker did not acknowledge our subscription to {topic_filter}")
        ready(topic_filter)
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                shown += _show(*arrived.get(timeout=0.1), emit, level, since)
    while not arrived.empty():  # what came before we disconnected
        shown += _show(*arrived.get_nowait(), emit, level, since)
    return shown


def _show(topic: str, payload: bytes, emit: Callable[[str], None], level: str, since: float | None) -> int:
    try:
        record = NodeLog.parse(payload)
        topic_node = topics.parse(topic).node
    except (ProtocolError, topics.TopicError):
        return 0  # not a v2 log record: nothing to show
    if not wanted(record, topic_node, level, since, time.time()):
        return 0
    emit(format_record(record))
    return 1


@click.command()
@broker_options
@click.argument("node", required=False)
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--follow", "-f", is_flag=True, help="Keep listening until Ctrl-C.")
@click.option(
    "--seconds", type=float, default=2.0, show_default=True, help="Without --follow: listen this long, then exit."
)
@click.option(
    "--since",
    type=float,
    help="Leave out records older than this many seconds (by the node's clock): a node back online "
    "sends what it queued while it was not.",
)
@click.option(
    "--level", type=click.Choice(["warning", "error"]), default="warning", show_default=True, help="The lowest level."
)
def logs(
    address: BrokerAddress,
    node: str | None,
    mqtt_version: str,
    follow: bool,
    seconds: float,
    since: float | None,
    level: str,
) -> None:
    """Nodes' warnings and errors (and failed tasks' stderr tails) as they arrive; NODE: one node's.

    Logs are not retained: this shows what nodes send while it listens.
    """
    if node is not None:
        try:
            topics.check_id(node, "node id")
        except topics.TopicError as exc:
            raise click.BadParameter(str(exc), param_hint="'NODE'") from exc
    hint = " (Ctrl-C stops)" if follow else ""
    with stop_on_signals() as stop:
        timer = threading.Timer(seconds, stop.set)
        if not follow:
            timer.start()
        try:
            shown = listen(
                address,
                mqtt_version,
                node,
                stop,
                click.echo,
                level=level,
                since=since,
                ready=lambda topic: click.echo(f"listening on {topic}{hint}", err=True),
            )
        except ConnectionError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            timer.cancel()
    if not follow and not shown:
        click.echo(f"no log records in {seconds:g} s (logs are not retained: --follow waits for them)", err=True)
