"""What would stop this node from working, found before it runs: ``edge-node check``.

A node with a wrong password, or whose id is not its broker identity, used to start, say
``ready``, and never appear (the broker's ACL drops what it publishes, without a word). Here each
such problem is one line saying what is wrong and what to check. The agent words a refused
connection the same way (:func:`connection_problem`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from manta_mqtt.transport.failures import Failure, classify, explain
from manta_mqtt.transport.mqtt import MqttLink

from .config import ConfigError, NodeConfig, dataset_problems, identity_problems

#: TLS refusals that are about who we are, not about the broker's certificate: Mosquitto refuses
#: a client certificate by closing the connection, which transport/tls.py words this way.
_CERT_REFUSED = ("refused our certificate", "wants a client certificate")


@dataclass
class Report:
    """``problems``: one line each, nothing is well when there is any; ``lines``: what was found."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def failure_kind(reason: str) -> str:
    """refused, unreachable, not authorised, TLS, timeout or protocol (a refused certificate is
    "not authorised": the broker does not know us, as with a wrong password)."""
    kind = classify(reason)
    if kind is Failure.TLS and any(words in reason for words in _CERT_REFUSED):
        return Failure.NOT_AUTHORISED.value
    return kind.value


def connection_problem(config: NodeConfig, reason: str) -> str:
    """Why the broker would not have us, in node.toml's words (``reason``: ``MqttLink.failure``)."""
    kind = failure_kind(reason)
    if kind == Failure.NOT_AUTHORISED.value:
        files = config.broker.tls_files
        if files is not None and files.cert is not None:
            detail = reason.removeprefix("TLS: ") if classify(reason) is Failure.TLS else reason
            return f"not authorised by the broker ({detail}): check [broker] tls_cert and tls_key"
        if config.broker.username is None:
            return "not authorised by the broker: it wants a user; set [broker] username and password_file"
        return "not authorised by the broker: check [broker] username and password_file"
    return f"{kind}: {explain(config.broker, reason)}"


def check_broker(config: NodeConfig, timeout: float) -> tuple[str, str]:
    """Connect and log in once, as this node, with a clean session: ("", protocol) or (problem, "")."""
    # another client id than the agent's, so that a running agent on a password broker is not
    # kicked out (a broker that takes the certificate's CN as the client id does kick it)
    client_id = f"{config.node_id}-check-{os.getpid()}"
    link = MqttLink(client_id, config.broker, version=config.mqtt_version, session_expiry=0)
    try:
        if link.start(timeout=timeout):
            return "", link.protocol
        return connection_problem(config, link.failure), ""
    finally:
        link.stop()


def check(config: NodeConfig, *, offline: bool, timeout: float) -> Report:
    """Datasets, identity and (unless ``offline``) the broker login of a loaded config."""
    report = Report()
    report.lines.append(f"node {config.node_id} -> {config.broker} (MQTT {config.mqtt_version})")
    report.lines.extend(f"  dataset {name}: {path}" for name, path in sorted(config.datasets.items()))
    report.lines.append(f"  {config.trust.describe()}")
    report.problems.extend(dataset_problems(config.datasets))
    report.problems.extend(identity_problems(config))
    if offline:
        report.lines.append("  broker: not tried (--offline)")
        return report
    problem, protocol = check_broker(config, timeout)
    if problem:
        report.problems.append(problem)
    else:
        who = f"as {config.broker.username!r}" if config.broker.username else "anonymously"
        if config.broker.tls_files is not None and config.broker.tls_files.cert is not None:
            who = f"with certificate CN {config.broker.tls_files.common_name()!r}"
        report.lines.append(f"  broker: connected and logged in {who} (MQTT {protocol})")
    return report


def load_for_check(path: Path) -> tuple[NodeConfig | None, list[str]]:
    """The config (datasets left to :func:`check`) or the lines saying why it cannot be read."""
    try:
        return NodeConfig.load(path, check_datasets=False), []
    except ConfigError as exc:
        return None, str(exc).splitlines()
