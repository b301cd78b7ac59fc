"""Compatibility package: Manta's task API (``manta_light``) on the manta-mqtt runtime.

Tasks written for Manta (``from manta_light.task import Task``) run unchanged.
"""

from manta_mqtt.runtime.aggregate import FedAvg, FedAvgError, fedavg
from manta_mqtt.runtime.local import Local
from manta_mqtt.runtime.task import Task
from manta_mqtt.runtime.utils import (
    bytes_to_dict,
    bytes_to_numpy,
    bytes_to_torchmodel,
    dict_to_bytes,
    numpy_to_bytes,
    torchmodel_to_bytes,
)
from manta_mqtt.runtime.world import Globals, ResultMethod, Results, World

__all__ = [
    "FedAvg",
    "FedAvgError",
    "Globals",
    "Local",
    "ResultMethod",
    "Results",
    "Task",
    "World",
    "bytes_to_dict",
    "bytes_to_numpy",
    "bytes_to_torchmodel",
    "dict_to_bytes",
    "fedavg",
    "numpy_to_bytes",
    "torchmodel_to_bytes",
]
