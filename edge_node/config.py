"""The node's TOML config (``edge-node start --config node.toml``).

```toml
[node]
id = "pi-kitchen"            # topic-safe: letters, digits, _ . -
data_dir = "~/.manta-node"   # code/globals cache and task working dirs
heartbeat = 30.0             # optional: seconds between status republishes, > 0

[broker]
url = "mqtts://broker.local:8883"  # mqtts:// for TLS (the tls_* files need it), mqtt:// without
tls_ca = "/etc/manta/ca.crt"       # the CA that signed the broker's certificate (default: the system's)
tls_cert = "/etc/manta/node.crt"   # this node's client certificate (CN = node id) and its key;
tls_key = "/etc/manta/node.key"    #   chmod 600 the key: the agent warns when others can read it
username = "pi-kitchen"            # or, without a client certificate: a user and password or password_file
password_file = "/etc/manta/password"  # chmod 600; a missing or unreadable file is an error
version = "auto"                   # "5", "3.1.1" or "auto"
chunk_size = 1048576               # optional: bytes per upload chunk, >= 1024 (default 1 MiB);
                                   #   an MQTT 5 broker's maximum packet size lowers it
inline_limit = 262144              # optional: bytes, >= 0 (default 256 KiB); a result or global
                                   #   larger than this is uploaded as chunks, not sent inline

[datasets]                         # name -> file or folder; relative paths start at this file
"mnist_part.npz" = "/data/mnist_part.npz"

[tasks]
timeout = 3600                     # upper bound on any one task run, in seconds
max_queued = 16                    # optional: assignments held behind the running one; more are refused
stop_grace = 10.0                  # optional: seconds a running task gets to finish when the agent
                                   #   stops (SIGTERM/Ctrl-C); then it is killed

[logs]                             # optional: the node's warnings and errors, published on its log topic
publish = true                     # false: keep them in the local log only
level = "warning"                  # the lowest level published: "warning" or "error"
per_minute = 30                    # at most this many records a minute, >= 1

[trust]                            # whose assignments this node runs (manta-mqtt keygen prints the line)
keys = ["ed25519:..."]             # swarm owners' public keys; or key_files = ["/etc/manta/owner.pub"]
allow_unsigned = false             # true only for a local test: then whoever can publish on the
                                   #   broker can run code here
```
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manta_mqtt.protocol.limits import DEFAULT_CHUNK_SIZE, DEFAULT_INLINE_LIMIT_BYTES, MAX_QUEUED_JOBS, MIN_CHUNK_SIZE
from manta_mqtt.protocol.signing import Trust, parse_public
from manta_mqtt.protocol.topics import TopicError, check_id
from manta_mqtt.transport.credentials import PasswordFileError, read_password_file, shared_warning
from manta_mqtt.transport.mqtt import VERSIONS, BrokerAddress
from manta_mqtt.transport.tls import TlsFileError, TlsFiles

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("edge_node.config")


class ConfigError(ValueError):
    """A config file that cannot run a node; the message names the field."""


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
    def load(cls, path: str | Path) -> NodeConfig:
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
        return cls.from_dict(data, path.parent)

    @classmethod
    def from_dict(cls, data: dict, base: Path) -> NodeConfig:  # type: ignore[type-arg]
        node = data.get("node", {})
        broker = data.get("broker", {})
        tasks = data.get("tasks", {})
        logs = data.get("logs", {})

        def resolve(value: str) -> Path:
            p = Path(value).expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        try:
            node_id = check_id(str(node.get("id", "")), "node.id")
        except TopicError as exc:
            raise ConfigError(str(exc)) from exc
        password = broker.get("password")
        if broker.get("password_file"):
            try:
                password = read_password_file(resolve(str(broker["password_file"])), log.warning)
            except PasswordFileError as exc:
                raise ConfigError(f"broker.password_file: {exc}") from exc
        try:
            address = BrokerAddress.parse(str(broker.get("url", "mqtt://127.0.0.1:1883")))
        except ValueError as exc:
            raise ConfigError(f"broker.url: {exc}") from exc
        try:
            address = address.with_tls(_tls(broker, node_id, resolve))
        except ValueError as exc:  # TLS files with an mqtt:// URL
            raise ConfigError(f"broker.url: {exc}") from exc
        version = str(broker.get("version", "auto"))
        if version not in ("auto", *VERSIONS):
            raise ConfigError(f"broker.version must be auto, 5 or 3.1.1, not {version!r}")
        datasets = {str(name): resolve(str(p)) for name, p in data.get("datasets", {}).items()}
        for name, p in datasets.items():
            if not p.exists():
                raise ConfigError(f"dataset {name!r}: nothing at {p}")
        return cls(
            node_id=node_id,
            broker=address.with_credentials(broker.get("username"), password),
            data_dir=resolve(str(node.get("data_dir", f"~/.manta-node/{node_id}"))),
            datasets=datasets,
            mqtt_version=version,
            task_timeout=float(tasks.get("timeout", 3600)),
            max_queued=_int(tasks, "max_queued", MAX_QUEUED_JOBS, minimum=0, table_name="tasks"),
            chunk_size=_int(broker, "chunk_size", DEFAULT_CHUNK_SIZE, minimum=MIN_CHUNK_SIZE),
            inline_limit=_int(broker, "inline_limit", DEFAULT_INLINE_LIMIT_BYTES, minimum=0),
            trust=_trust(data.get("trust", {}), resolve),
            stop_grace=_float(tasks, "stop_grace", 10.0, table_name="tasks", positive=False),
            heartbeat=_float(node, "heartbeat", 30.0, table_name="node", positive=True),
            log_publish=_bool(logs, "publish", True, table_name="logs"),
            log_level=_level(logs),
            log_per_minute=_int(logs, "per_minute", 30, minimum=1, table_name="logs"),
        )


def _tls(broker: Mapping[str, Any], node_id: str, resolve: Callable[[str], Path]) -> TlsFiles | None:
    """``tls_ca``, ``tls_cert`` and ``tls_key`` of the ``[broker]`` table, checked now rather than at connect."""
    paths = {}
    for which in ("ca", "cert", "key"):
        value = broker.get(f"tls_{which}")
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"broker.tls_{which} must be a file path, not {value!r}")
        paths[which] = resolve(value) if value else None
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


def _trust(table: Mapping[str, Any], resolve: Callable[[str], Path]) -> Trust:
    """The ``[trust]`` table: public keys inline or in files, and the local-test opt-out."""
    texts: list[tuple[str, str]] = []
    for i, text in enumerate(table.get("keys", [])):
        texts.append((f"trust.keys[{i}]", str(text)))
    for name in table.get("key_files", []):
        path = resolve(str(name))
        try:
            texts.append((f"trust.key_files: {path}", path.read_text()))
        except OSError as exc:
            raise ConfigError(f"trust.key_files: cannot read {path}: {exc.strerror or exc}") from exc
    keys = []
    for where, text in texts:
        try:
            keys.append(parse_public(text))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    allow = table.get("allow_unsigned", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"trust.allow_unsigned must be true or false, not {allow!r}")
    return Trust(keys, allow_unsigned=allow)


def _float(table: Mapping[str, Any], key: str, default: float, *, table_name: str, positive: bool) -> float:
    """A number of seconds: > 0 when ``positive``, else >= 0."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{table_name}.{key} must be a number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{table_name}.{key} must be {'more than 0' if positive else 'at least 0'}, not {value}")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, default: bool, *, table_name: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{table_name}.{key} must be true or false, not {value!r}")
    return value


def _level(table: Mapping[str, Any]) -> str:
    value = table.get("level", "warning")
    if value not in ("warning", "error"):
        raise ConfigError(f'logs.level must be "warning" or "error", not {value!r}')
    return str(value)


def _int(table: Mapping[str, Any], key: str, default: int, *, minimum: int, table_name: str = "broker") -> int:
    """An integer of a table: a typo such as ``"1M"`` or ``1.5`` must not start a node."""
    value = table.get(key, default)
    what = "an integer number of bytes" if table_name == "broker" else "an integer"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{table_name}.{key} must be {what}, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{table_name}.{key} must be at least {minimum}, not {value}")
    return value
