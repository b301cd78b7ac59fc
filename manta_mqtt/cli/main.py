"""``manta-mqtt``: run a swarm, run the embedded broker, read results, watch the topics."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..protocol.limits import (
    MAX_NODE_RESULT_BYTES,
    MAX_NODE_UPLOAD_BYTES,
    MAX_TOTAL_RESULT_BYTES,
    MAX_TOTAL_UPLOAD_BYTES,
    UPLOAD_WINDOW_BYTES,
)
from ..protocol.text import printable, printable_logging
from ..stopping import stop_on_signals
from ..transport.mqtt import BrokerAddress
from .connect import VERSION_CHOICE, VERSION_HELP, broker_address, broker_options
from .keys import keygen
from .logs import logs
from .results import results
from .site import site
from .swarms import stop, swarms
from .top import top

__all__ = ["broker_address", "broker_options", "cli", "main"]  # broker_address: tests and scripts use it


def _logging(verbose: int) -> None:
    # printable(): log lines quote what nodes sent (their errors, the topics of rejected messages)
    printable_logging(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)


@click.group()
@click.version_option(__version__, prog_name="manta-mqtt")
def cli() -> None:
    """Federated learning and swarm algorithms on edge fleets, over nothing but MQTT."""


@cli.command()
@click.argument("swarm_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@broker_options
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--swarm", "class_name", help="Swarm class to run when the file defines several.")
@click.option(
    "--min-nodes",
    default=1,
    show_default=True,
    help="Eligible nodes to wait for before starting; fewer within --wait: exit 4 (see --start-with-fewer).",
)
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for them (and for nodes later).")
@click.option(
    "--start-with-fewer",
    is_flag=True,
    help="Start with the eligible nodes online when --min-nodes are not there within --wait (instead of failing).",
)
@click.option(
    "--runs-dir",
    default="manta_runs",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the run is kept (RUNS_DIR/<swarm id>/).",
)
@click.option("--chunk-size", default=1024 * 1024, show_default=True, help="Bytes per chunk of large values.")
@click.option("--seed", default=0, show_default=True, help="Seed of node sampling.")
@click.option("--max-iterations", default=1000, show_default=True, help="Stop the swarm after this many iterations.")
@click.option(
    "--reconnect-grace",
    default=15.0,
    show_default=True,
    help=(
        "Seconds a node that went offline mid-step has to come back and report before the step goes on without it;"
        " a step also waits as long for a node schedule_next_iter names that went offline this recently."
    ),
)
@click.option(
    "--node-upload-budget",
    default=MAX_NODE_UPLOAD_BYTES,
    show_default=True,
    help="Bytes one node's unfinished uploads may hold on the coordinator; past it its chunks are refused.",
)
@click.option(
    "--upload-budget",
    default=MAX_TOTAL_UPLOAD_BYTES,
    show_default=True,
    help="Bytes all nodes' unfinished uploads may hold on the coordinator together.",
)
@click.option(
    "--upload-window",
    default=UPLOAD_WINDOW_BYTES,
    show_default=True,
    help="Bytes of upload chunks asked of nodes and not yet received, all nodes together; keep it well "
    "under the broker's per-client queue (Mosquitto's max_queued_bytes).",
)
@click.option(
    "--node-result-budget",
    default=MAX_NODE_RESULT_BYTES,
    show_default=True,
    help="Bytes of one node's result envelopes held before they are judged (queued, or before their step "
    "opens); past it they are refused.",
)
@click.option(
    "--result-budget",
    default=MAX_TOTAL_RESULT_BYTES,
    show_default=True,
    help="Bytes of all nodes' result envelopes held before they are judged, in each place.",
)
@click.option(
    "--stale-after",
    default=90.0,
    show_default=True,
    help="Seconds without a status from a node (they send one every 30 s) before it counts as gone.",
)
@click.option(
    "--warm-tasks/--no-warm-tasks",
    default=True,
    show_default=True,
    help="Keep a coordinator task's process for its next run, so its imports load once "
    "(--no-warm-tasks: a fresh process every run).",
)
@click.option("--warm-idle", default=300.0, show_default=True, help="Seconds a kept task process may wait unused.")
@click.option("--warm-max-rss", default=1024, show_default=True, help="MiB: a task process grown past it is not kept.")
@click.option("--summary-json", type=click.Path(path_type=Path), help="Write the run's summary here.")
@click.option(
    "--signing-key",
    envvar="MANTA_MQTT_SIGNING_KEY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The swarm owner's key (manta-mqtt keygen), to sign assignments (or MANTA_MQTT_SIGNING_KEY).",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue this run (manta_runs/<swarm id>) from its last completed step.",
)
@click.option("-v", "--verbose", count=True, help="-v logs what happens, -vv debug details.")
def run(
    swarm_file: Path,
    address: BrokerAddress,
    mqtt_version: str,
    class_name: str | None,
    min_nodes: int,
    wait: float,
    start_with_fewer: bool,
    runs_dir: Path,
    chunk_size: int,
    seed: int,
    max_iterations: int,
    reconnect_grace: float,
    stale_after: float,
    warm_tasks: bool,
    warm_idle: float,
    warm_max_rss: int,
    node_upload_budget: int,
    upload_budget: int,
    upload_window: int,
    node_result_budget: int,
    result_budget: int,
    summary_json: Path | None,
    signing_key: Path | None,
    resume: Path | None,
    verbose: int,
) -> None:
    """Run the swarm defined in SWARM_FILE until a task stops it (or resume a run with --resume).

    Exit status: 0 completed or stopped, 1 failed, 3 no broker connection, 4 --min-nodes not met,
    130 / 143 interrupted by SIGINT / SIGTERM (continue with --resume).
    """
    from ..coordinator.coordinator import Coordinator, CoordinatorOptions, SwarmFailed
    from ..coordinator.options import EXIT_NO_BROKER
    from ..runtime.reuse import ReuseSettings
    from ..swarm import load_swarm

    _logging(verbose)
    swarm = load_swarm(swarm_file, class_name)
    options = CoordinatorOptions(
        runs_dir=runs_dir,
        min_nodes=min_nodes,
        start_with_fewer=start_with_fewer,
        wait_nodes=wait,
        chunk_size=chunk_size,
        mqtt_version=mqtt_version,
        seed=seed,
        max_iterations=max_iterations,
        reconnect_grace=reconnect_grace,
        stale_after=stale_after,
        task_reuse=ReuseSettings(enabled=warm_tasks, idle_seconds=warm_idle, max_rss_mib=warm_max_rss),
        upload_budget_per_node=node_upload_budget,
        upload_budget_total=upload_budget,
        upload_window=upload_window,
        result_budget_per_node=node_result_budget,
        result_budget_total=result_budget,
        resume=resume,
        signing_key=signing_key,
    )
    try:
        coordinator = Coordinator(swarm, address, options)
    except (ValueError, SwarmFailed) as exc:  # a signing key that cannot be read, no run to resume
        raise click.ClickException(str(exc)) from exc
    handlers = {sig: signal.signal(sig, lambda signum, _f: coordinator.interrupt(signum)) for sig in _STOP_SIGNALS}
    try:
        summary = coordinator.run()
    except SwarmFailed as exc:  # --resume of a run that ended
        raise click.ClickException(str(exc)) from exc
    except ConnectionError as exc:  # refused, not authorised, TLS, timeout: one line says what to check
        if verbose:
            logging.getLogger("manta_mqtt").exception("connecting to %s", address)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_NO_BROKER)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    result = {
        "swarm_id": summary.swarm_id,
        "state": summary.state,
        "reason": summary.reason,
        "iterations": summary.iterations,
        "metrics": summary.metrics,
        "rejected": summary.rejected,
        "store": str(summary.store_path) if summary.kept else None,
        "exit_code": summary.exit_code,
    }
    if summary_json:
        summary_json.write_text(json.dumps(result, indent=2))
    sys.exit(summary.exit_code)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both stop a run as "interrupted" (resumable)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=1883, show_default=True, help="0 picks a free port.")
@click.option("--port-file", type=click.Path(path_type=Path), help="Write the bound port here once listening.")
def broker(host: str, port: int, port_file: Path | None) -> None:
    """Run the embedded MQTT 3.1.1 broker (amqtt) for development."""
    from ..transport.broker import EmbeddedBroker

    logging.basicConfig(level=logging.WARNING)
    embedded = EmbeddedBroker(host, port).start()
    click.echo(f"embedded broker listening on {embedded.url} (MQTT 3.1.1; Ctrl-C stops it)")
    if port_file:
        port_file.write_text(str(embedded.port))
    try:
        with stop_on_signals() as stop:
            stop.wait()
    finally:
        embedded.stop()


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@cli.command()
@broker_options
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def nodes(
    address: BrokerAddress,
    mqtt_version: str,
    as_json: bool,
) -> None:
    """List the nodes the broker knows: their retained statuses, and those nodes send when asked."""
    from ..tools.watch import node_table

    try:
        rows = node_table(address, version=mqtt_version)
    except ConnectionError as exc:  # refused (a wrong password, say) or unreachable
        raise click.ClickException(str(exc)) from exc
    if as_json:
        _print_json(rows)
        return
    for row in rows:  # a status is anyone's to publish: its text is shown escaped
        running = f"  running {row['running']}" if row["running"] else ""
        line = f"{row['node']:<20} {row['state']:<8} datasets: {', '.join(row['datasets'])}{running}"
        click.echo(printable(line, one_line=True))
    if not rows:
        click.echo("no nodes have announced themselves")


@cli.command()
@broker_options
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--topic", default="manta/v2/#", show_default=True, help="MQTT topic filter to subscribe to.")
@click.option("--seconds", type=float, help="Stop after this long (default: until Ctrl-C).")
def watch(
    address: BrokerAddress,
    mqtt_version: str,
    topic: str,
    seconds: float | None,
) -> None:
    """Print every protocol message, decoded to one line (binary payloads summarised)."""
    from ..tools.watch import watch as do_watch

    with stop_on_signals() as stop:
        timer = threading.Timer(seconds or 0, stop.set)
        if seconds:
            timer.start()
        try:
            do_watch(
                address,
                version=mqtt_version,
                topic_filter=topic,
                emit=lambda line: click.echo(f"{time.strftime('%H:%M:%S')} {printable(line, one_line=True)}"),
                stop=stop,
            )
        except ConnectionError as exc:  # refused (a wrong password, say) or unreachable
            raise click.ClickException(str(exc)) from exc
        finally:
            timer.cancel()


cli.add_command(keygen)
cli.add_command(results)
cli.add_command(site)
cli.add_command(swarms)
cli.add_command(stop)
cli.add_command(top)
cli.add_command(logs)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
