"""The options of every ``manta-mqtt`` command that connects (``run``, ``nodes``, ``watch``, ...).

Declared once, read once: where the broker is, and who we are to it (a user and password, or a
client certificate), so that every command takes the same options and applies the same checks.
What the command line and the environment leave unsaid comes from the site profile
(:mod:`.profile`), then from the defaults.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from ..transport.credentials import VISIBLE_IN_PS, PasswordFileError, read_password_file
from ..transport.mqtt import BrokerAddress
from ..transport.tls import TlsFileError, TlsFiles
from .profile import Profile, ProfileError, find

__all__ = ["broker_address", "broker_options"]

BROKER_HELP = (
    "Broker URL, mqtt:// or mqtts://; a cluster: every member, mqtt://h1:1883,h2:1883 "
    "(default: the profile's, else mqtt://127.0.0.1:1883)."
)
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
VERSION_CHOICE = click.Choice(["auto", "5", "3.1.1"])
VERSION_HELP = "MQTT version: auto tries 5, then 3.1.1 (use 3.1.1 with the embedded broker)."
F = TypeVar("F", bound=Callable[..., Any])


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def broker_options(command: F) -> F:
    """The options of every command that connects: where the broker is and who we are to it.

    The command receives them as one ``address`` (see :func:`broker_address`), so that every
    command reads credentials and TLS files the same way.
    """

    @functools.wraps(command)
    def with_address(
        *args: Any,
        profile: Path | None,
        broker: str | None,
        username: str | None,
        password_file: Path | None,
        password: str | None,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        **kwargs: Any,
    ) -> Any:
        try:
            site = find(profile)
        except ProfileError as exc:
            raise click.BadParameter(str(exc), param_hint="'--profile'") from exc
        if site is not None:
            broker, username, password_file, tls_ca, tls_cert, tls_key = _fill(
                site, broker, username, password_file if password is None else None, tls_ca, tls_cert, tls_key
            )
            source = click.get_current_context().get_parameter_source("mqtt_version")
            if site.version and "mqtt_version" in kwargs and source is click.core.ParameterSource.DEFAULT:
                kwargs["mqtt_version"] = site.version
        address = broker_address(
            broker or DEFAULT_BROKER,
            username,
            password_file,
            password,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        return command(*args, address=address, **kwargs)

    path = click.Path(dir_okay=False, path_type=Path)
    for option in reversed(
        [
            click.option(
                "--profile",
                envvar="MANTA_MQTT_PROFILE",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Site profile (TOML) with the broker and credentials (default: ./manta.toml, "
                "then ~/.config/manta-mqtt/profile.toml; or MANTA_MQTT_PROFILE).",
            ),
            click.option("--broker", help=BROKER_HELP),
            click.option("--username", envvar="MANTA_MQTT_USERNAME", help="Broker user (or MANTA_MQTT_USERNAME)."),
            click.option(
                "--password-file",
                type=click.Path(path_type=Path),
                help="File holding the broker password (or MANTA_MQTT_PASSWORD_FILE; or set MANTA_MQTT_PASSWORD).",
            ),
            click.option("--password", help="Deprecated: visible in ps; use --password-file or MANTA_MQTT_PASSWORD."),
            click.option(
                "--tls-ca",
                envvar="MANTA_MQTT_TLS_CA",
                type=path,
                help="CA file that signed the broker's certificate (or MANTA_MQTT_TLS_CA; default: the system's).",
            ),
            click.option(
                "--tls-cert",
                envvar="MANTA_MQTT_TLS_CERT",
                type=path,
                help="Our client certificate, PEM (or MANTA_MQTT_TLS_CERT); needs --tls-key and an mqtts:// broker.",
            ),
            click.option(
                "--tls-key",
                envvar="MANTA_MQTT_TLS_KEY",
                type=path,
                help="The client certificate's private key, PEM, chmod 600 (or MANTA_MQTT_TLS_KEY).",
            ),
        ]
    ):
        with_address = option(with_address)
    return cast(F, with_address)


def _fill(
    site: Profile,
    broker: str | None,
    username: str | None,
    password_file: Path | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> tuple[str | None, str | None, Path | None, Path | None, Path | None, Path | None]:
    """What the command line and environment left unsaid, from the profile. A password given
    another way (``MANTA_MQTT_PASSWORD``...) keeps the profile's password file out of it."""
    env = os.environ
    if password_file is None and not (env.get("MANTA_MQTT_PASSWORD_FILE") or env.get("MANTA_MQTT_PASSWORD")):
        password_file = site.password_file
    return (
        broker or site.url,
        username or site.username,
        password_file,
        tls_ca or site.tls_ca,
        tls_cert or site.tls_cert,
        tls_key or site.tls_key,
    )


def broker_address(
    url: str,
    username: str | None,
    password_file: Path | None,
    password: str | None,
    environ: Mapping[str, str] = os.environ,
    *,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> BrokerAddress:
    """The broker and our credentials; the first password found wins: --password-file, --password,
    MANTA_MQTT_PASSWORD_FILE, MANTA_MQTT_PASSWORD, the URL's. TLS files need an mqtts:// URL.
    Bad input exits with code 2."""
    try:
        address = BrokerAddress.parse(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--broker'") from exc
    if address.password is not None:
        _warn(f"the password in --broker is {VISIBLE_IN_PS}")
    if password is not None:
        _warn(f"--password is {VISIBLE_IN_PS}")
        if password_file is not None:
            raise click.UsageError("give --password-file or --password, not both")
    file_hint = "'--password-file'"
    if password_file is None and password is None and environ.get("MANTA_MQTT_PASSWORD_FILE"):
        password_file, file_hint = Path(environ["MANTA_MQTT_PASSWORD_FILE"]), "MANTA_MQTT_PASSWORD_FILE"
    if password_file is not None:
        try:
            password = read_password_file(password_file, _warn)
        except PasswordFileError as exc:
            raise click.BadParameter(str(exc), param_hint=file_hint) from exc
    elif password is None:
        password = environ.get("MANTA_MQTT_PASSWORD") or None
    try:
        files = TlsFiles.load(tls_ca, tls_cert, tls_key, warn=_warn)
    except TlsFileError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'--tls-{exc.which}'") from exc
    try:
        address = address.with_tls(files)
    except ValueError as exc:  # TLS files with an mqtt:// URL
        raise click.BadParameter(str(exc), param_hint="'--broker'") from exc
    return address.with_credentials(username, password)
