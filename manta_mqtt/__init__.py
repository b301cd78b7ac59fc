"""manta-mqtt: run Manta-style swarm tasks on edge fleets connected only by an MQTT broker.

The names users need are importable from here (``from manta_mqtt import Swarm, RunStore``), but
each is loaded on first use (PEP 562): the edge agent imports this package for ``__version__``
and must not pay for the coordinator's rich, sqlite3 or click.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .coordinator.coordinator import Coordinator, CoordinatorOptions, RunSummary, SwarmFailed
    from .coordinator.store import RunStore
    from .swarm import Module, Swarm, Task, load_swarm
    from .transport.mqtt import BrokerAddress

#: Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
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

__all__ = [
    "BrokerAddress",
    "Coordinator",
    "CoordinatorOptions",
    "Module",
    "RunStore",
    "RunSummary",
    "Swarm",
    "SwarmFailed",
    "Task",
    "__version__",
    "load_swarm",
]


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name as Any

    def __getattr__(name: str) -> Any:
        """Import a public name's module on first access, then keep the name here."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The lazy names too, so completion and ``dir()`` show the whole public face."""
    return sorted(set(globals()) | set(_EXPORTS))
