"""The node's TOML config: the [broker] sizes (chunk_size, inline_limit) are read and validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_node.config import ConfigError, NodeConfig
from manta_mqtt.protocol.limits import DEFAULT_CHUNK_SIZE, DEFAULT_INLINE_LIMIT_BYTES, MIN_CHUNK_SIZE


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
    ):
        with pytest.raises(ConfigError):
            NodeConfig.from_dict(bad, tmp_path)
