"""``manta-mqtt swarms`` and ``manta-mqtt stop``: the swarms a site's broker knows, and an
operator's way to end one without the coordinator's terminal."""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import asdict

import click

from ..protocol.messages import SwarmState
from ..protocol.text import age, printable
from ..tools import fleet
from ..transport.mqtt import BrokerAddress
from .connect import VERSION_CHOICE, VERSION_HELP, broker_options


def _row(s: SwarmState, now: float) -> str:
    when = age(now - s.updated) if s.updated else "?"
    step = f"{s.step} {s.done}/{s.expected}" if s.step else ""
    metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(s.metrics.items())[:3])
    return printable(f"{s.swarm:<28} {s.state:<12} {s.iteration:>5} {when:>5}  {step:<18} {metrics}", one_line=True)


@click.command()
@broker_options
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--prune", is_flag=True, help="Clear the retained state of every swarm that ended.")
@click.option(
    "--older-than",
    type=float,
    help="With --prune: also swarms whose state is older than this many seconds, whatever it says.",
)
def swarms(address: BrokerAddress, mqtt_version: str, as_json: bool, prune: bool, older_than: float | None) -> None:
    """List the swarms the broker knows (live and ended), newest first; --prune tidies up."""
    try:
        with fleet.connected(address, mqtt_version, "swarms") as link:
            states = fleet.swarm_states(link)
            now = time.time()
            pruned = fleet.prunable(states, now, older_than) if prune else []
            for s in pruned:
                fleet.prune(link, s.swarm)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([asdict(s) | {"pruned": s in pruned} for s in states], indent=2))
        return
    if not states:
        click.echo("no swarms on this broker")
        return
    click.echo(f"{'SWARM':<28} {'STATE':<12} {'ITER':>5} {'AGE':>5}  {'STEP':<18} METRICS")
    for s in states:
        click.echo(_row(s, now) + ("  (pruned)" if s in pruned else ""))
    if prune:
        click.echo(f"pruned {len(pruned)} swarm(s)")


@click.command()
@broker_options
@click.argument("swarm")
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--reason", default="", help="Why; shown in the swarm's final state.")
@click.option("--wait", type=float, default=30.0, show_default=True, help="Seconds to wait for its coordinator.")
def stop(address: BrokerAddress, swarm: str, mqtt_version: str, reason: str, wait: float) -> None:
    """Ask SWARM's coordinator to stop it after the step under way (the broker's ACL decides who may)."""
    by = getpass.getuser()
    try:
        with fleet.connected(address, mqtt_version, "stop") as link:
            final, already = fleet.request_stop(link, swarm, reason or f"stopped by {by}", by, wait)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    if already:
        assert final is not None
        click.echo(printable(f"swarm {swarm} had already ended: {final.state} {final.reason}".rstrip()))
    elif final is None:
        raise click.ClickException(
            f"no answer from the coordinator of {swarm} within {wait:g} s: is it running? (`manta-mqtt swarms`)"
        )
    else:
        click.echo(printable(f"swarm {swarm} {final.state}: {final.reason}"))
