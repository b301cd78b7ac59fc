"""The node's TOML config (``edge-node start --config node.toml``).

```toml
[node]
id = "pi-kitchen"            # topic-safe: letters, digits, _ . -
data_dir = "~/.manta-node"   # code/globals cache and task working dirs
heartbeat = 30.0             # optional: seconds between status republishes, > 0

[broker]
url = "mqtts://broker.local:8883"  # mqtts:// for TLS (the tls_* files need it), mqtt:// without;
                                   #   a cluster: every member, "mqtts://b1:8883,b2:8883,b3" (the
                                   #   agent moves to a live one when its own dies)
tls_ca = "/etc/manta/ca.crt"       # the CA that signed the broker's certificate (default: the system's)
tls_cert = "/etc/manta/node.crt"   # this node's client certificate (CN = node id) and its key;
tls_key = "/etc/manta/node.key"    #   chmod 600 the key: the agent warns when others can read it
username = "pi-kitchen"            # or, without a client certificate: a user and password or password_file
password_file = "/etc/manta/password"  # chmod 600; a missing or unreadable file is an error
version = "auto"                   # "5", "3.1.1" or "auto"
chunk_size = 1048576               # optional, >= 1024; unused since uploads are pulled: the
                                   #   coordinator's grants set the chunk size (--chunk-size)
inline_limit = 262144              # optional: bytes, >= 0 (default 256 KiB); a result or global
                                   #   larger than this is uploaded as chunks, not sent inline

[datasets]                         # name -> file or folder; relative paths start at this file
"mnist_part.npz" = "/data/mnist_part.npz"

[tasks]
timeout = 3600                     # upper bound on any one task run, in seconds
max_queued = 16                    # optional: assignments held behind the running one; more are refused
stop_grace = 10.0                  # optional: seconds a running task gets to finish when the agent
                                   #   stops (SIGTERM/Ctrl-C); then it is killed
warm = true                        # optional: keep a task's process for its swarm's next run, so
                                   #   its imports load once; false: a fresh process every run
warm_idle = 300.0                  # optional: seconds a kept process may wait unused, then it ends
warm_max_rss_mib = 1024            # optional: a process that grew past this many MiB is not kept

[cache]                            # optional: data_dir/cache, the fetched code and globals and large results
max_mib = 2048                     # MiB, >= 1; past it the least recently used blobs are deleted (those
                                   #   still needed stay: the job's, results the coordinator may pull)

[logs]                             # optional: the node's warnings and errors, published on its log topic
publish = true                     # false: keep them in the local log only
level = "warning"                  # the lowest level published: "warning" or "error"
per_minute = 30                    # at most this many records a minute, >= 1

[trust]                            # whose assignments this node runs (manta-mqtt keygen prints the line)
keys = ["ed25519:..."]             # swarm owners' public keys; or key_files = ["/etc/manta/owner.pub"]
allow_unsigned = false             # true only for a local test: then whoever can publish on the
                                   #   broker can run code here
```

Every table and key is checked against :mod:`.schema`: an unknown one (a typo) is refused with a
"did you mean", a value of the wrong type names the type expected. ``edge-node check`` also
connects to the broker and checks the node's identity (:mod:`.check`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manta_mqtt.protocol.limits import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_INLINE_LIMIT_BYTES,
    DEFAULT_NODE_CACHE_BYTES,
    MAX_QUEUED_JOBS,
    MiB,
)
from manta_mqtt.protocol.signing import Trust, parse_public_raw
from manta_mqtt.protocol.topics import TopicError, check_id
from manta_mqtt.runtime.reuse import ReuseSettings
from manta_mqtt.transport.credentials import PasswordFileError, read_password_file, shared_warning
from manta_mqtt.transport.mqtt import BrokerAddress
from manta_mqtt.transport.tls import TlsFileError, TlsFiles

from .schema import BrokerTable, ConfigError, TrustTable, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ConfigError", "NodeConfig", "dataset_problems", "identity_problems"]

log = logging.getLogger("edge_node.config")


@dataclass
class NodeConfig:
    node_id: str
    broker: BrokerAddress
    data_dir: Path
    datasets: dict[str, Path] = field(default_factory=dict)
    mqtt_version: str = "auto"
    task_timeout: float = 3600.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    inline_limit: int = DEFAULT_INLINE_LIMIT_BYTES
    trust: Trust = field(default_factory=lambda: Trust([]))  # by default: runs nothing
    max_queued: int = MAX_QUEUED_JOBS  # assignments held behind the running one
    stop_grace: float = 10.0  # seconds a running task gets to finish when the agent stops
    heartbeat: float = 30.0  # seconds between status republishes
    log_publish: bool = True  # publish warnings/errors on the node's log topic
    log_level: str = "warning"  # the lowest level published: "warning" or "error"
    log_per_minute: int = 30  # rate limit of published log records
    task_reuse: ReuseSettings = field(default_factory=ReuseSettings)  # warm task processes ([tasks] warm*)
    cache_max_bytes: int = DEFAULT_NODE_CACHE_BYTES  # the blob cache's budget ([cache] max_mib)

    def override(self, *, broker_url: str | None = None, mqtt_version: str | None = None) -> None:
        """Apply command-line overrides (credentials from the config are kept)."""
        if broker_url:
            try:
                address = BrokerAddress.parse(broker_url)
            except ValueError as exc:
                raise ConfigError(f"--broker: {exc}") from exc
            try:  # the config's certificate stays too, and needs an mqtts:// URL
                address = address.with_tls(self.broker.tls_files)
            except ValueError as exc:
                raise ConfigError(f"--broker: {exc}") from exc
            self.broker = address.with_credentials(self.broker.username, self.broker.password)
        if mqtt_version:
            self.mqtt_version = mqtt_version

    @classmethod
    def load(cls, path: str | Path, *, check_datasets: bool = True) -> NodeConfig:
        """Read and check ``path``; ``check_datasets=False`` leaves the datasets to :func:`dataset_problems`."""
        path = Path(path).expanduser().resolve()
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"no config file at {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
        mode = path.stat().st_mode
        broker = data.get("broker")
        if isinstance(broker, dict) and broker.get("password") and mode & 0o044:
            log.warning("%s (or move it to a password_file)", shared_warning(path, mode))
        return cls.from_dict(data, path.parent, check_datasets=check_datasets)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path, *, check_datasets: bool = True) -> NodeConfig:
        checked = validate(data)
        node, broker, tasks, logs = checked.node, checked.broker, checked.tasks, checked.logs

        def resolve(value: str) -> Path:
            p = Path(value).expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        try:
            node_id = check_id(node.id, "node.id")
        except TopicError as exc:
            raise ConfigError(str(exc)) from exc
        password = broker.password
        if broker.password_file:
            try:
                password = read_password_file(resolve(broker.password_file), log.warning)
            except PasswordFileError as exc:
                raise ConfigError(f"broker.password_file: {exc}") from exc
        try:
            address = BrokerAddress.parse(broker.url)
        except ValueError as exc:
            raise ConfigError(f"broker.url: {exc}") from exc
        try:
            address = address.with_tls(_tls(broker, node_id, resolve))
        except ValueError as exc:  # TLS files with an mqtt:// URL
            raise ConfigError(f"broker.url: {exc}") from exc
        datasets = {name: resolve(p) for name, p in checked.datasets.items()}
        problems = dataset_problems(datasets) if check_datasets else []
        if problems:
            raise ConfigError("\n".join(problems))
        return cls(
            node_id=node_id,
            broker=address.with_credentials(broker.username, password),
            data_dir=resolve(node.data_dir or f"~/.manta-node/{node_id}"),
            datasets=datasets,
            mqtt_version=str(broker.version),
            task_timeout=tasks.timeout,
            max_queued=tasks.max_queued,
            chunk_size=broker.chunk_size,
            inline_limit=broker.inline_limit,
            trust=_trust(checked.trust, resolve),
            stop_grace=tasks.stop_grace,
            task_reuse=ReuseSettings(
                enabled=tasks.warm, idle_seconds=tasks.warm_idle, max_rss_mib=tasks.warm_max_rss_mib
            ),
            cache_max_bytes=checked.cache.max_mib * MiB,
            heartbeat=node.heartbeat,
            log_publish=logs.publish,
            log_level=logs.level,
            log_per_minute=logs.per_minute,
        )


def dataset_problems(datasets: dict[str, Path]) -> list[str]:
    """One line per dataset the agent could not read: missing, or not readable by this user."""
    problems = []
    for name, path in sorted(datasets.items()):
        if not path.exists():
            problems.append(f"dataset {name!r}: nothing at {path} (check [datasets] in node.toml)")
        elif not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            problems.append(f"dataset {name!r}: {path} is not readable by this user (check its owner and mode)")
    return problems


def identity_problems(config: NodeConfig) -> list[str]:
    """A node whose broker identity is not its id: the broker ACL (``%u``) drops all it publishes.

    The broker knows a node by its user name, or, on the site's certificate port, by its
    certificate's CN; broker_config/manta.acl lets that identity write only its own topics.
    """
    problems = []
    username = config.broker.username
    if username is not None and username != config.node_id:
        problems.append(
            f"[broker] username {username!r} is not [node] id {config.node_id!r}: the broker's ACL lets a node "
            "publish only under its own user name (make them the same)"
        )
    files = config.broker.tls_files
    name = files.common_name() if files is not None and files.cert is not None else None
    if name is not None and name != config.node_id:
        problems.append(
            f"[broker] tls_cert {files.cert if files else ''} is for {name!r} (CN), not for [node] id "
            f"{config.node_id!r}: the broker takes the CN as the node's identity (use this node's certificate)"
        )
    return problems


def _tls(broker: BrokerTable, node_id: str, resolve: Callable[[str], Path]) -> TlsFiles | None:
    """``tls_ca``, ``tls_cert`` and ``tls_key`` of the ``[broker]`` table, checked now rather than at connect."""
    paths = {
        which: resolve(value) if value else None
        for which, value in (("ca", broker.tls_ca), ("cert", broker.tls_cert), ("key", broker.tls_key))
    }
    try:
        files = TlsFiles.load(
            paths["ca"], paths["cert"], paths["key"], warn=lambda m: log.warning("broker.tls_key: %s", m)
        )
    except TlsFileError as exc:
        raise ConfigError(f"broker.tls_{exc.which}: {exc}") from exc
    name = files.common_name() if files is not None else None
    if name is not None and name != node_id:  # the broker takes the CN for the node's name (mosquitto-pi.conf)
        log.warning(
            "broker.tls_cert: the certificate is for %r (CN), not for node %r: a broker that takes the "
            "certificate's CN as the identity (broker_config/mosquitto-pi.conf) refuses this node's topics",
            name,
            node_id,
        )
    return files


def _trust(table: TrustTable, resolve: Callable[[str], Path]) -> Trust:
    """The ``[trust]`` table: public keys inline or in files, and the local-test opt-out."""
    texts = [(f"trust.keys[{i}]", text) for i, text in enumerate(table.keys)]
    for name in table.key_files:
        path = resolve(name)
        try:
            texts.append((f"trust.key_files: {path}", path.read_text()))
        except OSError as exc:
            raise ConfigError(f"trust.key_files: cannot read {path}: {exc.strerror or exc}") from exc
    keys = []
    for where, text in texts:
        try:
            keys.append(parse_public_raw(text))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return Trust(keys, allow_unsigned=table.allow_unsigned)
