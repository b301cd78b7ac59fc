"""``manta_mqtt``'s public face: every exported name resolves to its defining module, and
``import manta_mqtt`` stays lean, because the edge agent imports it for ``__version__``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import manta_mqtt

from .conftest import ROOT

#: Public name -> the module it is re-exported from (a path existing code imports, kept working).
EXPORTED_FROM = {
    "Swarm": "manta_mqtt.swarm",
    "Module": "manta_mqtt.swarm",
    "Task": "manta_mqtt.swarm",
    "load_swarm": "manta_mqtt.swarm",
    "RunStore": "manta_mqtt.coordinator.store",
    "Coordinator": "manta_mqtt.coordinator.coordinator",
    "CoordinatorOptions": "manta_mqtt.coordinator.coordinator",
    "RunSummary": "manta_mqtt.coordinator.coordinator",
    "SwarmFailed": "manta_mqtt.coordinator.coordinator",
    "BrokerAddress": "manta_mqtt.transport.mqtt",
}
#: What a bare ``import manta_mqtt`` must not load.
HEAVY = ["rich", "sqlite3", "click", "paho", "torch", "numpy", "msgpack"]


def test_all_lists_exactly_the_public_names() -> None:
    assert sorted(manta_mqtt.__all__) == sorted([*EXPORTED_FROM, "__version__"])


@pytest.mark.parametrize("name", sorted(EXPORTED_FROM))
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(manta_mqtt, name)
    assert value is getattr(importlib.import_module(EXPORTED_FROM[name]), name)
    assert value.__module__.startswith("manta_mqtt.")
    assert name in dir(manta_mqtt)


def test_star_import_gives_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from manta_mqtt import *", namespace)  # the import a user would write
    assert set(manta_mqtt.__all__) <= set(namespace)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = manta_mqtt.Nope  # type: ignore[attr-defined]
    assert not hasattr(manta_mqtt, "Nope")


def loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_manta_mqtt_is_lean() -> None:
    loaded = loaded_after("import manta_mqtt\nfrom manta_mqtt import __version__")
    assert "manta_mqtt" in loaded
    assert not loaded & set(HEAVY), f"import manta_mqtt loads {sorted(loaded & set(HEAVY))}"


def test_the_probe_sees_heavy_imports() -> None:
    """The lean check would notice: touching a coordinator name does load sqlite3."""
    assert "sqlite3" in loaded_after("import manta_mqtt\nmanta_mqtt.RunStore")
