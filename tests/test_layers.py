"""The layer table of docs/architecture.md, enforced: each layer imports only the layers above it.

Every ``.py`` under manta_mqtt/, manta_light/ and edge_node/ is parsed with ``ast`` (imports
inside functions and under ``TYPE_CHECKING`` count too), each import of our own packages is
resolved to a module and mapped to its layer, and the layer must be one the table allows.
A few third-party and standard-library modules are forbidden where they would break a layer's
promise: the coordinator's step engine stays sans-I/O and clock-free, the edge agent stays
small enough for a Raspberry Pi, the protocol stays free of paho.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

OURS = ("manta_mqtt", "manta_light", "edge_node")

#: Module prefix -> layer; the longest matching prefix wins.
LAYER_OF = {
    "manta_mqtt.__version__": "base",  # `from manta_mqtt import __version__`: any layer may
    "manta_mqtt.ownership": "base",
    "manta_mqtt.stopping": "base",
    "manta_mqtt": "public face",  # the package root re-exports every layer; nothing inside imports it
    "manta_mqtt.protocol": "protocol",
    "manta_mqtt.blobstore": "storage",
    "manta_mqtt.transport": "transport",
    "manta_mqtt.runtime": "task runtime",
    "manta_light": "task runtime",
    "manta_mqtt.swarm": "swarm definition",
    "manta_mqtt.coordinator.engine": "coordinator engine",
    "manta_mqtt.coordinator": "coordinator",
    "edge_node": "edge agent",
    "manta_mqtt.cli": "CLI and tools",
    "manta_mqtt.tools": "CLI and tools",
    "edge_node.cli": "CLI and tools",
}

#: The table of docs/architecture.md, top to bottom: a layer may use the ones above it.
ORDER = ["base", "protocol", "storage", "transport", "task runtime", "swarm definition"]
ALLOWED: dict[str, set[str]] = {layer: set(ORDER[: i + 1]) for i, layer in enumerate(ORDER)}
ALLOWED["coordinator engine"] = {"base", "protocol", "swarm definition", "coordinator engine"}
ALLOWED["coordinator"] = {*ORDER, "coordinator engine", "coordinator"}  # the engine is its plain-code core
ALLOWED["edge agent"] = {*ORDER, "edge agent"}  # a peer of the coordinator: never imports it
ALLOWED["CLI and tools"] = {*ORDER, "coordinator engine", "coordinator", "edge agent", "CLI and tools"}
ALLOWED["public face"] = set(LAYER_OF.values())

#: Package prefix -> our modules it must never import, whatever its layer.
NEVER_OURS = {
    "edge_node": ("manta_mqtt.coordinator",),  # edge_node/cli.py too, though the CLI layer may
}

#: Package prefix -> third-party or standard-library modules it must never import.
NEVER_OTHERS = {
    "manta_mqtt.coordinator.engine": {"time", "paho", "sqlite3", "socket", "ssl", "select", "selectors", "asyncio"},
    "edge_node": {"torch", "rich", "sqlite3"},
    "manta_mqtt.protocol": {"paho"},
}
#: Packages that may import nothing but the standard library and the layers allowed above.
STDLIB_ONLY = ("manta_mqtt.coordinator.engine",)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. manta_mqtt.transport.blobs
    target: str  # what it imports, resolved: manta_mqtt.blobstore, or numpy
    line: int

    @property
    def ours(self) -> bool:
        return self.target.split(".")[0] in OURS


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is one of our modules or packages (a namespace folder counts)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    matches = [prefix for prefix in LAYER_OF if under(module, prefix)]
    return LAYER_OF[max(matches, key=len)] if matches else None


def imports_of(source: str, module: str, is_package: bool) -> Iterator[Import]:
    """Every import in ``source`` (the text of ``module``), resolved to absolute module names."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = package[: len(package) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            targets = {base}  # `from x import a, b`: x itself, or x.a and x.b where those are modules
            if base.split(".")[0] in OURS:
                named = {f"{base}.{alias.name}" for alias in node.names}
                submodules = {t for t in named if is_module(t) or t == "manta_mqtt.__version__"}
                targets = submodules | ({base} if named - submodules else set())
            for target in sorted(targets):
                yield Import(module, target, node.lineno)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found += imports_of(path.read_text(), module_name(path), path.name == "__init__.py")
    return found


def violations(imports: list[Import]) -> list[str]:
    """Every import that breaks the table or a NEVER rule, as 'module:line imports target (why)'."""
    problems = []
    for imp in imports:
        where = f"{imp.source}:{imp.line} imports {imp.target}"
        source_layer = layer_of(imp.source)
        top = imp.target.split(".")[0]
        if source_layer is None:
            problems.append(f"{where} (no layer for {imp.source}: add it to LAYER_OF and the doc's table)")
            continue
        if imp.ours:
            target_layer = layer_of(imp.target)
            if target_layer not in ALLOWED[source_layer]:
                problems.append(f"{where} ({source_layer} may not use {target_layer})")
            for prefix, banned in NEVER_OURS.items():
                if under(imp.source, prefix) and any(under(imp.target, b) for b in banned):
                    problems.append(f"{where} ({prefix} never imports {imp.target})")
        else:
            for prefix, banned_others in NEVER_OTHERS.items():
                if under(imp.source, prefix) and top in banned_others:
                    problems.append(f"{where} ({prefix} never imports {top})")
            stdlib_only = any(under(imp.source, prefix) for prefix in STDLIB_ONLY)
            if stdlib_only and top not in sys.stdlib_module_names:
                problems.append(f"{where} ({imp.source} imports only the standard library and its allowed layers)")
    return problems


def test_the_imports_follow_the_layer_table() -> None:
    problems = violations(all_imports())
    assert not problems, "imports that break docs/architecture.md's layers:\n" + "\n".join(problems)


def test_the_scan_sees_the_real_imports() -> None:
    """A parser that finds nothing would pass the test above: check edges known to exist."""
    edges = {(layer_of(i.source), layer_of(i.target)) for i in all_imports() if i.ours}
    assert ("transport", "storage") in edges  # transport/blobs.py uses the blob store
    assert ("task runtime", "protocol") in edges
    assert ("swarm definition", "protocol") in edges
    assert ("edge agent", "base") in edges  # from manta_mqtt import __version__
    assert ("CLI and tools", "coordinator") in edges


def test_every_module_has_a_layer() -> None:
    modules = [module_name(p) for package in OURS for p in (ROOT / package).rglob("*.py")]
    assert modules
    assert not [m for m in modules if layer_of(m) is None]


def module_violations(module: str, source: str) -> list[str]:
    return violations(list(imports_of(source, module, is_package=False)))


@pytest.mark.parametrize(
    "module, source, reason",
    [
        ("manta_mqtt.coordinator.engine.rounds", "import time", "never imports time"),
        ("manta_mqtt.coordinator.engine.rounds", "from time import monotonic", "never imports time"),
        ("manta_mqtt.coordinator.engine.rounds", "import numpy", "only the standard library"),
        ("manta_mqtt.coordinator.engine.rounds", "from ...transport.mqtt import MqttLink", "may not use transport"),
        ("manta_mqtt.coordinator.engine.rounds", "from ..store import RunStore", "may not use coordinator"),
        ("manta_mqtt.coordinator.engine.rounds", "from ...runtime import executor", "may not use task runtime"),
        ("manta_mqtt.coordinator.engine.rounds", "import paho.mqtt.client", "never imports paho"),
        ("edge_node.agent", "import torch", "never imports torch"),
        ("edge_node.agent", "from rich.console import Console", "never imports rich"),
        ("edge_node.outbox", "import sqlite3", "never imports sqlite3"),
        ("edge_node.cli", "from manta_mqtt.coordinator.store import RunStore", "never imports manta_mqtt.coordinator"),
        ("edge_node.agent", "from manta_mqtt import Swarm", "may not use public face"),
        ("manta_mqtt.protocol.codec", "import paho.mqtt.client as mqtt", "never imports paho"),
        ("manta_mqtt.protocol.codec", "from ..blobstore import BlobStore", "may not use storage"),
        ("manta_mqtt.transport.blobs", "from ..runtime.host import TaskHost", "may not use task runtime"),
        ("manta_mqtt.swarm.graph", "from ..coordinator.store import RunStore", "may not use coordinator"),
    ],
)
def test_forbidden_imports_are_caught(module: str, source: str, reason: str) -> None:
    """The rules themselves: each of these imports, put in that module, must fail the table."""
    problems = module_violations(module, source)
    assert any(reason in p for p in problems), problems


@pytest.mark.parametrize(
    "module, source",
    [
        ("manta_mqtt.coordinator.engine.rounds", "from ...protocol.messages import ResultEnvelope"),
        ("manta_mqtt.coordinator.engine.placement", "import random\nfrom ...swarm.graph import Task"),
        ("manta_mqtt.coordinator.engine.rounds", "from .checkpoint import Checkpoint\nfrom ...ownership import Owner"),
        ("manta_mqtt.coordinator.coordinator", "from .engine.rounds import StepRound"),
        ("edge_node.agent", "import time\nfrom manta_mqtt import __version__\nfrom manta_mqtt.blobstore import X"),
        ("manta_mqtt.protocol.messages", "from ..ownership import Owner"),
    ],
)
def test_allowed_imports_pass(module: str, source: str) -> None:
    assert module_violations(module, source) == []


def test_the_loaded_edge_agent_stays_lean() -> None:
    """Rule (b) through every transitive import: loading the agent and its CLI loads none of these."""
    code = (
        "import json, pathlib, sys\nimport edge_node.agent, edge_node.cli\n"
        "from edge_node.config import NodeConfig\n"  # a config that trusts a key: still no cryptography
        "key = 'ed25519:' + 'A' * 43 + '='\n"
        "NodeConfig.from_dict({'node': {'id': 'n1'}, 'trust': {'keys': [key]}}, pathlib.Path('.'))\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "edge_node" in loaded
    assert not loaded & {"torch", "rich", "sqlite3"}, (
        f"the edge agent loads {sorted(loaded & {'torch', 'rich', 'sqlite3'})}"
    )
    # deferred to the first assignment (signature check) and the first array (codec): an idle
    # agent that loads them is ~25 MiB larger (bench/bench_edge_rss.py; target <= 40 MiB)
    deferred = {"numpy", "cryptography"}
    assert not loaded & deferred, f"the idle edge agent loads {sorted(loaded & deferred)}"
