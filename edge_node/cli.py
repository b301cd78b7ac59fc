"""``edge-node``: the device agent's command line."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from manta_mqtt import __version__
from manta_mqtt.protocol.signing import Trust, parse_public_raw
from manta_mqtt.protocol.text import printable_logging
from manta_mqtt.transport.mqtt import BrokerAddress

from .check import check as check_config
from .check import load_for_check
from .config import ConfigError, NodeConfig, identity_problems


@click.group()
@click.version_option(__version__, prog_name="edge-node")
def cli() -> None:
    """Run manta-mqtt swarm tasks on this device's private data."""


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="The node's TOML config.")
@click.option(
    "--broker",
    help="Override the config's broker URL, or a cluster's: mqtt://h1:1883,h2:1883 (credentials stay in node.toml).",
)
@click.option("--mqtt-version", type=click.Choice(["auto", "5", "3.1.1"]), help="Override broker.version.")
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run only assignments signed by this public key (a .pub file); replaces the config's [trust].",
)
@click.option("-v", "--verbose", count=True, help="-v for task output and details, -vv for debug.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings only.")
def start(
    config_path: Path,
    broker: str | None,
    mqtt_version: str | None,
    trust_keys: tuple[Path, ...],
    verbose: int,
    quiet: bool,
) -> None:
    """Connect to the broker and run assigned tasks until stopped (SIGTERM or Ctrl-C)."""
    # every log line goes through printable(): they quote tasks' output and tracebacks (code
    # that came from the network) and the topics of rejected messages
    printable_logging(logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO)
    if verbose == 0:
        logging.getLogger("manta_mqtt.executor").setLevel(logging.WARNING)
    if broker and _url_password(broker):
        click.echo("warning: the password in --broker is visible in ps; use password_file in node.toml", err=True)
    try:
        config = NodeConfig.load(config_path)
        config.override(broker_url=broker, mqtt_version=mqtt_version)
        if trust_keys:
            config.trust = Trust([parse_public_raw(path.read_text()) for path in trust_keys])
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    problems = identity_problems(config)
    if problems:
        raise click.ClickException("\n".join(problems))
    from .agent import EdgeAgent

    stop, kill = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # the first SIGTERM or Ctrl-C stops gracefully; a second one kills the running task at once
        if stop.is_set():
            kill.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    EdgeAgent(config).run(stop, kill)


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="The node's TOML config.")
@click.option("--offline", is_flag=True, help="Check the file, datasets and identity only; do not connect.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the broker's answer.",
)
def check(config_path: Path, offline: bool, timeout: float) -> None:
    """Validate a config file, its datasets and identity, and log in to the broker; exit 1 on any problem."""
    printable_logging(logging.WARNING)
    config, problems = load_for_check(config_path)
    if config is not None:
        report = check_config(config, offline=offline, timeout=timeout)
        click.echo("\n".join(report.lines))
        problems = report.problems
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} found in {config_path}", err=True)
        raise SystemExit(1)
    click.echo("all well" + (" (broker not tried)" if offline else ""))


def _url_password(url: str) -> bool:
    try:
        return BrokerAddress.parse(url).password is not None
    except ValueError:
        return False  # NodeConfig.override reports it


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
