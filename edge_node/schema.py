"""The shape of node.toml: every table, key and type, checked before anything is used.

A misspelt key (``pasword_file``) or table (``[dataset]``) used to be ignored, and the node then
ran without it; here it is refused with a "did you mean", naming the table and key. Types and
bounds are msgspec's (a C extension: light enough for a Pi, see the README); its errors are
turned into ``table.key must be <what>, not <value>``. The meaning of each key is in
:mod:`.config`; :class:`NodeConfig <.config.NodeConfig>` is built from :class:`ConfigFile`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec
from msgspec import Meta

from manta_mqtt.protocol.limits import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_INLINE_LIMIT_BYTES,
    DEFAULT_NODE_CACHE_BYTES,
    MAX_QUEUED_JOBS,
    MIN_CHUNK_SIZE,
    MiB,
)


class ConfigError(ValueError):
    """A config file that cannot run a node; the message names the field (one line per problem)."""


Path = Annotated[str, Meta(description="a file path", min_length=1)]
Seconds = Annotated[float, Meta(description="a number of seconds", ge=0)]
PositiveSeconds = Annotated[float, Meta(description="a number of seconds", gt=0)]


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class NodeTable(_Table):
    id: Annotated[str, Meta(description="a node name")] = ""
    data_dir: Path | None = None
    heartbeat: PositiveSeconds = 30.0


class BrokerTable(_Table):
    url: Annotated[str, Meta(description="a broker URL")] = "mqtt://127.0.0.1:1883"
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    username: Annotated[str, Meta(description="a user name", min_length=1)] | None = None
    password: Annotated[str, Meta(description="a password")] | None = None
    password_file: Path | None = None
    version: Literal["auto", "5", "3.1.1", 5] = "auto"
    chunk_size: Annotated[int, Meta(description="an integer number of bytes", ge=MIN_CHUNK_SIZE)] = DEFAULT_CHUNK_SIZE
    inline_limit: Annotated[int, Meta(description="an integer number of bytes", ge=0)] = DEFAULT_INLINE_LIMIT_BYTES


class TasksTable(_Table):
    timeout: PositiveSeconds = 3600.0
    max_queued: Annotated[int, Meta(description="an integer", ge=0)] = MAX_QUEUED_JOBS
    stop_grace: Seconds = 10.0
    warm: bool = True
    warm_idle: Seconds = 300.0
    warm_max_rss_mib: Annotated[int, Meta(description="an integer number of MiB", ge=1)] = 1024


class CacheTable(_Table):
    max_mib: Annotated[int, Meta(description="an integer number of MiB", ge=1)] = DEFAULT_NODE_CACHE_BYTES // MiB


class TrustTable(_Table):
    keys: list[Annotated[str, Meta(description="a public key")]] = []
    key_files: list[Path] = []
    allow_unsigned: bool = False


class LogsTable(_Table):
    publish: bool = True
    level: Literal["warning", "error"] = "warning"
    per_minute: Annotated[int, Meta(description="an integer", ge=1)] = 30


class ConfigFile(_Table):
    node: NodeTable = msgspec.field(default_factory=NodeTable)
    broker: BrokerTable = msgspec.field(default_factory=BrokerTable)
    datasets: dict[str, Path] = {}
    tasks: TasksTable = msgspec.field(default_factory=TasksTable)
    cache: CacheTable = msgspec.field(default_factory=CacheTable)
    trust: TrustTable = msgspec.field(default_factory=TrustTable)
    logs: LogsTable = msgspec.field(default_factory=LogsTable)


def validate(data: Mapping[str, Any]) -> ConfigFile:
    """The checked file; :class:`ConfigError` lists every unknown table and key, or the first bad value."""
    unknown = list(_unknown(data))
    if unknown:
        raise ConfigError("\n".join(unknown))
    try:
        return msgspec.convert(data, ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), data)) from None


def keys_of(struct: type[msgspec.Struct]) -> list[str]:
    """A table's keys, in the schema's order."""
    return [f.encode_name for f in msgspec.structs.fields(struct)]


#: Table name -> its schema; ``[datasets]`` is free-form (name -> path) and not in here.
TABLES: dict[str, type[msgspec.Struct]] = {
    f.encode_name: f.type
    for f in msgspec.structs.fields(ConfigFile)
    if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct)
}


def _unknown(data: Mapping[str, Any]) -> list[str]:
    problems = []
    sections = keys_of(ConfigFile)
    for section, table in data.items():
        if section not in sections:
            problems.append(f"unknown table [{section}]{_did_you_mean(section, sections, '[{}]')}")
        elif section in TABLES and isinstance(table, Mapping):
            keys = keys_of(TABLES[section])
            problems.extend(
                f"unknown key {key!r} in [{section}]{_did_you_mean(str(key), keys, '{}')}"
                for key in table
                if key not in keys
            )
    return problems


def _did_you_mean(word: str, choices: list[str], form: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {form.format(close[0])}?"
    return f" (known: {', '.join(form.format(c) for c in choices)})"


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>.*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]|\[(.*?)\]")


def _explain(message: str, data: Mapping[str, Any]) -> str:
    """msgspec's "Expected `int` >= 1024 - at `$.broker.chunk_size`", in the config's words."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    path = match["path"] or ""
    steps: list[str | int] = []
    value: Any = data
    for name, index, other in _STEP.findall(path):
        step: str | int = name if name else int(index) if index else other
        if step == "..." and isinstance(value, Mapping):  # a value in [datasets]: msgspec hides the key
            step = next((k for k, v in value.items() if not (isinstance(v, str) and v)), "...")
        steps.append(step)
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            value = None
    where = _where(steps)
    annotation = _annotation(steps)
    expected = _expected(annotation)
    if "length" in match["what"] and isinstance(value, str):
        return f"{where} must not be empty"
    bound = re.search(r"(>=|>|<=|<) (-?[\d.]+)", match["what"])
    if bound is not None and _right_type(value, annotation):
        words = {">=": "at least", ">": "more than", "<=": "at most", "<": "less than"}[bound[1]]
        number = bound[2].removesuffix(".0")
        return f"{where} must be {words} {number}, not {value!r}"
    if not steps:
        return f"the config file: {match['what']}"
    return f"{where} must be {expected}, not {value!r}"


def _where(steps: list[str | int]) -> str:
    if not steps:
        return "the config file"
    if len(steps) == 1:
        return f"[{steps[0]}]"
    key = str(steps[1])
    text = f"{steps[0]}.{key if re.fullmatch(r'[A-Za-z0-9_-]+', key) else json.dumps(key)}"
    return text + "".join(f"[{s!r}]" if isinstance(s, str) else f"[{s}]" for s in steps[2:])


def _annotation(steps: list[str | int]) -> Any:
    """The schema's type at ``steps`` (None when the path leaves the schema)."""
    annotation: Any = ConfigFile
    for step in steps:
        annotation = _strip(annotation)
        if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(annotation)}
            annotation = fields.get(str(step))
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return None
    return annotation


def _strip(annotation: Any) -> Any:
    """``X | None`` -> X; Annotated[X, ...] stays (its description names it)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not Annotated and type(None) in get_args(annotation) and len(args) == 1:
        return args[0]
    return annotation


def _expected(annotation: Any) -> str:
    annotation = _strip(annotation)
    if get_origin(annotation) is Annotated:
        base, *metas = get_args(annotation)
        for meta in metas:
            if isinstance(meta, msgspec.Meta) and meta.description:
                return meta.description
        return _expected(base)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(annotation) if isinstance(v, str))
    if get_origin(annotation) is list:
        return f"a list of {_expected(get_args(annotation)[0]).removeprefix('a ').removeprefix('an ')}s"
    if get_origin(annotation) is dict:
        return "a table"
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(annotation, "valid")


def _right_type(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the base type of ``annotation`` (then only a bound failed)."""
    annotation = _strip(annotation)
    base = get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation
    if isinstance(value, bool):
        return base is bool
    if base is float:
        return isinstance(value, (int, float))
    return isinstance(base, type) and isinstance(value, base)
