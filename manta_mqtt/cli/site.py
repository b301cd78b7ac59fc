"""``manta-mqtt site``: secure a site (CAs, broker bundle, kits) with a handful of commands.

The logic is :mod:`manta_mqtt.tools.site`; this module only prints what to copy where. It never
prints a secret (keys and passwords stay in files written 0600), only their paths.
"""

from __future__ import annotations

import contextlib
import datetime
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ..tools.site import DEFAULT_DIR, OPERATORS, Change, Site, SiteError, install_commands

SOON = datetime.timedelta(days=30)  # `site list` flags certificates expiring sooner


class SiteGroup(click.Group):
    """A group whose --help also lists each command's options: one screen is the whole reference."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        rows: dict[str, tuple[list[str], str]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None:
                continue
            sub = click.Context(command, info_name=name, parent=ctx)
            for param in command.get_params(sub):
                record = param.get_help_record(sub) if isinstance(param, click.Option) else None
                if record is not None and record[0] != "--help":
                    rows.setdefault(record[0], ([], record[1]))[0].append(name)
        with formatter.section("Options of its commands"):
            formatter.write_dl([(opt, f"({', '.join(names)}) {text}") for opt, (names, text) in rows.items()])


def site_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--site",
        "root",
        default=DEFAULT_DIR,
        show_default=True,
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="The site folder. It holds the CA keys: keep it on a trusted machine.",
    )(command)


@click.group(cls=SiteGroup)
def site() -> None:
    """Secure a site: CAs, the broker's files, and a kit per node, coordinator and monitor.

    Nothing here touches the broker or a node: each command says what to copy where.
    """


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """A refused operation, or a file that cannot be read or written, is an error message, not a traceback."""
    try:
        yield
    except SiteError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}") from exc


def _open(root: Path) -> Site:
    with _refusals():
        return Site.open(root)


def _q(path: Path) -> str:
    return shlex.quote(str(path))


def _broker_steps(s: Site, change: Change, first: bool = False) -> None:
    what = "the bundle" if first else "the updated bundle"
    click.echo(
        f"\nOn the broker, from a copy of {what} (rsync -a {_q(s.bundle)}/ BROKER:manta-broker/; cd manta-broker):"
    )
    if first:
        click.echo("  sudo apt install mosquitto mosquitto-clients")
    for line in install_commands(change.bundle, change.restart, first):
        click.echo(f"  {line}")
    click.echo("  sudo tail -n 20 /var/log/mosquitto/mosquitto.log    # no warning, no error")
    if change.restart and not first:
        click.echo(
            "(A restart, not a reload: a reload refuses a revoked certificate only at its next connection and\n"
            "leaves the connection it holds open. Nodes reconnect by themselves; retained data and queued\n"
            "messages survive the restart.)"
        )


@site.command()
@site_option
@click.option(
    "--broker-name",
    "broker_names",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A host name or IP address clients use for the broker (repeat for each); the first is the default URL's.",
)
def init(root: Path, broker_names: tuple[str, ...]) -> None:
    """Create a site: both CAs, the broker's certificate and bundle, the owner's key, the operators' kits."""
    with _refusals():
        s, change = Site.init(root, list(broker_names))
    host = s.broker_names[0]
    click.echo(f"site created in {root}: keep this folder on a trusted machine (it holds both CA keys, ca/*.key)")
    click.echo(f"  {root / 'owner.key'}: the swarm owner's signing key (its .pub goes in every node kit)")
    for operator in OPERATORS:
        click.echo(f"  {root / operator}/: the {operator}'s kit (ca.crt, {operator}.crt, {operator}.key)")
    click.echo(f"  {s.bundle}/: the broker's files, laid out like /etc/mosquitto/")
    kit = root / "coordinator"
    click.echo(
        f"\nRun a swarm: manta-mqtt run SWARM.py --broker mqtts://{host}:8884 --tls-ca {_q(kit / 'ca.crt')} "
        f"--tls-cert {_q(kit / 'coordinator.crt')} --tls-key {_q(kit / 'coordinator.key')} "
        f"--signing-key {_q(root / 'owner.key')}"
    )
    _broker_steps(s, change, first=True)
    click.echo(f"\nThen, for each Pi: manta-mqtt site add-node NODE_ID --site {_q(root)}")


@site.command("add-node")
@click.argument("node_id")
@site_option
@click.option("--url", metavar="URL", help="The broker URL the node dials (default: mqtts://FIRST-BROKER-NAME:8883).")
def add_node(node_id: str, root: Path, url: str | None) -> None:
    """Enrol NODE_ID: its certificate (CN = NODE_ID), its ACL block and its kit folder."""
    s = _open(root)
    with _refusals():
        change = s.add_node(node_id, url)
    entry = s.nodes[node_id]
    kit = s.kit(node_id)
    click.echo(f"node {node_id} enrolled: certificate {entry.serial:x}, valid until {entry.expires.date()}")
    click.echo(
        f"\nIts kit is {kit}/ (node.toml, ca.crt, {node_id}.crt, {node_id}.key). On the Pi, as the agent's user:"
    )
    steps = [
        (f"rsync -a {_q(kit)}/ PI:manta/", "from this machine (PI: the Pi's ssh address)"),
        ("pip install manta-mqtt", "on the Pi; then name its data files under [datasets] in ~/manta/node.toml"),
        ("edge-node check --config ~/manta/node.toml", ""),
        ("edge-node start --config ~/manta/node.toml", "or a systemd unit with Restart=always"),
    ]
    width = max(len(command) for command, _ in steps)
    for command, note in steps:
        click.echo(f"  {command:<{width}}    # {note}" if note else f"  {command}")
    _broker_steps(s, change)


@site.command("remove-node")
@click.argument("node_id")
@site_option
def remove_node(node_id: str, root: Path) -> None:
    """Revoke NODE_ID's certificate, remove its ACL block and delete its kit."""
    s = _open(root)
    serial = s.nodes[node_id].serial if node_id in s.nodes else 0
    with _refusals():
        change = s.remove_node(node_id)
    click.echo(f"node {node_id} removed: certificate {serial:x} revoked, its ACL block and its kit deleted")
    _broker_steps(s, change)


@site.command("rotate-node")
@click.argument("node_id")
@site_option
def rotate_node(node_id: str, root: Path) -> None:
    """Revoke NODE_ID's certificate and issue a new one in its kit (node.toml is kept)."""
    s = _open(root)
    old = s.nodes[node_id].serial if node_id in s.nodes else 0
    with _refusals():
        change = s.rotate_node(node_id)
    entry, kit = s.nodes[node_id], s.kit(node_id)
    click.echo(f"node {node_id} re-keyed: certificate {old:x} revoked; new certificate {entry.serial:x}, "
               f"valid until {entry.expires.date()}")  # fmt: skip
    click.echo("\nCopy the new certificate and key to the Pi, then restart its agent there (a running agent")
    click.echo("keeps the certificate it started with, through its reconnections):")
    click.echo(f"  scp {_q(kit / f'{node_id}.crt')} {_q(kit / f'{node_id}.key')} PI:manta/")
    click.echo("  then on the Pi: restart edge-node start --config ~/manta/node.toml (or its systemd unit)")
    _broker_steps(s, change)


@site.command("list")
@site_option
def list_nodes(root: Path) -> None:
    """The site's nodes: certificate serial, expiry, broker URL; and how many certificates are revoked."""
    s = _open(root)
    now = datetime.datetime.now(datetime.timezone.utc)
    click.echo(f"{'NODE':<24} {'SERIAL':<42} {'EXPIRES':<11} URL")
    for node_id, entry in sorted(s.nodes.items()):
        soon = "  (expires soon: manta-mqtt site rotate-node)" if entry.expires - now < SOON else ""
        click.echo(f"{node_id:<24} {entry.serial:<42x} {entry.expires.date()!s:<11} {entry.url}{soon}")
    click.echo(f"{len(s.nodes)} nodes; {len(s.revoked)} certificates revoked; brokers: {', '.join(s.broker_names)}")
