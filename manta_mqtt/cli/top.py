"""``manta-mqtt top``: a live, full-screen view of a site's nodes, swarms and traffic."""

from __future__ import annotations

import click

from ..tools.top.model import FILTERS, SORTS
from ..transport.mqtt import BrokerAddress
from .connect import VERSION_CHOICE, VERSION_HELP, broker_options


@click.command()
@broker_options
@click.option("--mqtt-version", type=VERSION_CHOICE, default="auto", show_default=True, help=VERSION_HELP)
@click.option("--sort", type=click.Choice(SORTS), default="node", show_default=True, help="Node order (key s).")
@click.option("--filter", "only", type=click.Choice(FILTERS), default="all", show_default=True, help="Nodes (key f).")
@click.option("--no-traffic", is_flag=True, help="Skip traffic rates: subscribe to statuses and states only.")
@click.option("--refresh", type=float, default=1.0, show_default=True, help="Seconds between redraws.")
@click.option("--once", is_flag=True, help="Print one snapshot and exit (no screen, no keys).")
@click.option("--width", type=int, default=160, show_default=True, help="With --once: columns to print.")
def top(
    address: BrokerAddress,
    mqtt_version: str,
    sort: str,
    only: str,
    no_traffic: bool,
    refresh: float,
    once: bool,
    width: int,
) -> None:
    """Live view of the site: nodes, swarms, traffic and the broker (q quits, s sorts, f filters)."""
    from ..tools.top import app

    try:
        if once:
            app.once(address, mqtt_version, sort=sort, only=only, settle=1.0, width=width)
        else:
            app.run(address, mqtt_version, sort=sort, only=only, traffic=not no_traffic, refresh=refresh)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
