"""The node's TOML config: every key read and validated; unknown tables and keys refused with a "did you mean"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_node.config import ConfigError, NodeConfig
from edge_node.schema import TABLES, keys_of
from manta_mqtt.protocol.limits import DEFAULT_CHUNK_SIZE, DEFAULT_INLINE_LIMIT_BYTES, MIN_CHUNK_SIZE
from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.runtime.reuse import ReuseSettings


def config(tmp_path: Path, **broker: Any) -> NodeConfig:
    data = {"node": {"id": "pi-1", "data_dir": str(tmp_path / "data")}, "broker": {"url": "mqtt://b:1883", **broker}}
    return NodeConfig.from_dict(data, tmp_path)


def test_defaults_are_the_protocol_defaults(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert (cfg.chunk_size, cfg.inline_limit) == (DEFAULT_CHUNK_SIZE, DEFAULT_INLINE_LIMIT_BYTES)
    assert (NodeConfig.chunk_size, NodeConfig.inline_limit) == (DEFAULT_CHUNK_SIZE, DEFAULT_INLINE_LIMIT_BYTES)


def test_sizes_are_read_from_the_broker_table(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "pi-1"\n\n[broker]\nurl = "mqtt://b:1883"\nchunk_size = 65536\ninline_limit = 0\n')
    cfg = NodeConfig.load(path)
    assert (cfg.chunk_size, cfg.inline_limit) == (65536, 0)


def test_the_smallest_allowed_values(tmp_path: Path) -> None:
    cfg = config(tmp_path, chunk_size=MIN_CHUNK_SIZE, inline_limit=0)
    assert (cfg.chunk_size, cfg.inline_limit) == (MIN_CHUNK_SIZE, 0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("chunk_size", MIN_CHUNK_SIZE - 1),
        ("chunk_size", 0),
        ("chunk_size", -1),
        ("chunk_size", "1M"),
        ("chunk_size", "1048576"),
        ("chunk_size", 1048576.0),
        ("chunk_size", True),
        ("chunk_size", [1024]),
        ("inline_limit", -1),
        ("inline_limit", "256K"),
        ("inline_limit", 262144.5),
        ("inline_limit", False),
        ("inline_limit", {"bytes": 1}),
    ],
)
def test_invalid_sizes_name_the_field(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^broker\.{key} must be"):
        config(tmp_path, **{key: value})


def test_a_bad_size_in_a_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "pi-1"\n\n[broker]\ninline_limit = -5\n')
    with pytest.raises(ConfigError, match=r"broker\.inline_limit must be at least 0, not -5"):
        NodeConfig.load(path)


def test_the_job_queue_bound_is_configurable(tmp_path: Path) -> None:
    base = {"node": {"id": "n1"}}
    assert NodeConfig.from_dict(base, tmp_path).max_queued == 16
    assert NodeConfig.from_dict(base | {"tasks": {"max_queued": 2}}, tmp_path).max_queued == 2
    for bad in (-1, "16", 1.5, True):
        with pytest.raises(ConfigError, match=r"tasks\.max_queued"):
            NodeConfig.from_dict(base | {"tasks": {"max_queued": bad}}, tmp_path)


def test_health_and_log_keys(tmp_path: Path) -> None:
    base: dict[str, Any] = {"node": {"id": "n1"}}
    cfg = NodeConfig.from_dict(base, tmp_path)
    assert (cfg.heartbeat, cfg.log_publish, cfg.log_level, cfg.log_per_minute, cfg.stop_grace) == (
        30.0,
        True,
        "warning",
        30,
        10.0,
    )
    data = {
        "node": {"id": "n1", "heartbeat": 5},
        "logs": {"publish": False, "level": "error", "per_minute": 1},
        "tasks": {"stop_grace": 0},
    }
    cfg = NodeConfig.from_dict(data, tmp_path)
    assert (cfg.heartbeat, cfg.log_publish, cfg.log_level, cfg.log_per_minute, cfg.stop_grace) == (
        5.0,
        False,
        "error",
        1,
        0.0,
    )
    for bad in (
        {"node": {"id": "n1", "heartbeat": 0}},
        {"node": {"id": "n1", "heartbeat": "30"}},
        {"node": {"id": "n1"}, "logs": {"level": "info"}},
        {"node": {"id": "n1"}, "logs": {"per_minute": 0}},
        {"node": {"id": "n1"}, "logs": {"publish": "yes"}},
        {"node": {"id": "n1"}, "tasks": {"stop_grace": -1}},
        {"node": {"id": "n1"}, "cache": {"max_mib": 0}},
    ):
        with pytest.raises(ConfigError):
            NodeConfig.from_dict(bad, tmp_path)


# --- the schema: unknown tables and keys, wrong types -----------------------------------------


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    """The full node.toml of the module docstring, every key set (files made to exist)."""
    (tmp_path / "password").write_text("secret\n")
    (tmp_path / "password").chmod(0o600)
    (tmp_path / "data.npz").write_bytes(b"x")
    public = OwnerKey.generate().save(tmp_path / "owner.key")
    data: dict[str, Any] = {
        "node": {"id": "pi-1", "data_dir": "state", "heartbeat": 12.5},
        "broker": {
            "url": "mqtt://b:1883",
            "username": "pi-1",
            "password": "unused",
            "password_file": "password",
            "version": "3.1.1",
            "chunk_size": 4096,
            "inline_limit": 100,
        },
        "datasets": {"data.npz": "data.npz"},
        "tasks": {
            "timeout": 60,
            "max_queued": 3,
            "stop_grace": 2.5,
            "warm": False,
            "warm_idle": 7.5,
            "warm_max_rss_mib": 256,
        },
        "cache": {"max_mib": 64},
        "trust": {"keys": [public.read_text().strip()], "key_files": [str(public)], "allow_unsigned": False},
        "logs": {"publish": False, "level": "error", "per_minute": 5},
    }
    tls_keys = {"tls_ca", "tls_cert", "tls_key"}  # tested with real files in tests/security/test_tls_files.py
    for table, struct in TABLES.items():
        assert set(keys_of(struct)) - tls_keys == set(data[table]), table  # this test sets every key
    cfg = NodeConfig.from_dict(data, tmp_path)
    assert cfg.data_dir == tmp_path / "state" and cfg.heartbeat == 12.5
    assert (cfg.broker.username, cfg.broker.password, cfg.mqtt_version) == ("pi-1", "secret", "3.1.1")
    assert (cfg.chunk_size, cfg.inline_limit) == (4096, 100)
    assert cfg.datasets == {"data.npz": tmp_path / "data.npz"}
    assert (cfg.task_timeout, cfg.max_queued, cfg.stop_grace) == (60.0, 3, 2.5)
    assert cfg.task_reuse == ReuseSettings(enabled=False, idle_seconds=7.5, max_rss_mib=256)
    assert NodeConfig.from_dict({"node": {"id": "pi-1"}}, tmp_path).task_reuse == ReuseSettings()  # warm by default
    assert len(cfg.trust.keys) == 1 and not cfg.trust.allow_unsigned
    assert (cfg.log_publish, cfg.log_level, cfg.log_per_minute) == (False, "error", 5)
    assert cfg.cache_max_bytes == 64 * 1024 * 1024
    assert NodeConfig.from_dict({"node": {"id": "pi-1"}}, tmp_path).cache_max_bytes == 2048 * 1024 * 1024
    assert NodeConfig.from_dict({"node": {"id": "pi-1"}, "broker": {"version": 5}}, tmp_path).mqtt_version == "5"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"broker": {"pasword_file": "p"}}, "unknown key 'pasword_file' in [broker]; did you mean password_file?"),
        ({"dataset": {"a": "a.npz"}}, "unknown table [dataset]; did you mean [datasets]?"),
        ({"node": {"id": "n1", "hearbeat": 3}}, "unknown key 'hearbeat' in [node]; did you mean heartbeat?"),
        ({"log": {}}, "unknown table [log]; did you mean [logs]?"),
        ({"tasks": {"stop_grase": 1}}, "unknown key 'stop_grase' in [tasks]; did you mean stop_grace?"),
        (
            {"tasks": {"xyz": 1}},
            "unknown key 'xyz' in [tasks] (known: timeout, max_queued, stop_grace, warm, warm_idle, warm_max_rss_mib)",
        ),
    ],
)
def test_an_unknown_table_or_key_is_refused_with_a_did_you_mean(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    data = {"node": {"id": "n1"}} | data
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict(data, tmp_path)
    assert str(info.value) == message


def test_every_unknown_key_is_listed_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "n1"\n[broker]\nusrname = "n1"\npasword = "x"\n[dataset]\n')
    with pytest.raises(ConfigError) as info:
        NodeConfig.load(path)
    assert str(info.value).splitlines() == [
        "unknown key 'usrname' in [broker]; did you mean username?",
        "unknown key 'pasword' in [broker]; did you mean password?",
        "unknown table [dataset]; did you mean [datasets]?",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tasks": {"timeout": "1h"}}, "tasks.timeout must be a number of seconds, not '1h'"),
        ({"tasks": {"timeout": 0}}, "tasks.timeout must be more than 0, not 0"),
        ({"broker": {"url": 1883}}, "broker.url must be a broker URL, not 1883"),
        ({"broker": {"username": 7}}, "broker.username must be a user name, not 7"),
        ({"broker": {"version": "4"}}, "broker.version must be one of 'auto', '5', '3.1.1', not '4'"),
        ({"broker": {"password_file": ""}}, "broker.password_file must not be empty"),
        ({"trust": {"keys": "ed25519:x"}}, "trust.keys must be a list of public keys, not 'ed25519:x'"),
        ({"trust": {"allow_unsigned": "yes"}}, "trust.allow_unsigned must be true or false, not 'yes'"),
        ({"logs": {"level": "info"}}, "logs.level must be one of 'warning', 'error', not 'info'"),
        ({"logs": {"per_minute": 0}}, "logs.per_minute must be at least 1, not 0"),
        ({"cache": {"max_mib": 0}}, "cache.max_mib must be at least 1, not 0"),
        ({"cache": {"max_mib": "2G"}}, "cache.max_mib must be an integer number of MiB, not '2G'"),
        ({"node": {"id": "n1", "heartbeat": True}}, "node.heartbeat must be a number of seconds, not True"),
        ({"datasets": {"a.npz": 3}}, 'datasets."a.npz" must be a file path, not 3'),
        ({"datasets": ["a.npz"]}, "[datasets] must be a table, not ['a.npz']"),
        ({"broker": "mqtt://b"}, "[broker] must be a table, not 'mqtt://b'"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_type_expected(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    data = {"node": {"id": "n1"}} | data
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict(data, tmp_path)
    assert str(info.value) == message


def test_a_missing_password_file_is_one_line(tmp_path: Path) -> None:
    data = {"node": {"id": "n1"}, "broker": {"username": "n1", "password_file": "nope"}}
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict(data, tmp_path)
    assert str(info.value) == f"broker.password_file: password file {tmp_path / 'nope'} does not exist"
