"""``from manta_light.utils import numpy_to_bytes, bytes_to_numpy, fedavg, ...``."""

from manta_mqtt.runtime.aggregate import FedAvg, FedAvgError, fedavg
from manta_mqtt.runtime.utils import (
    bytes_to_dict,
    bytes_to_numpy,
    bytes_to_torchmodel,
    dict_to_bytes,
    numpy_to_bytes,
    torchmodel_to_bytes,
)

__all__ = [
    "FedAvg",
    "FedAvgError",
    "bytes_to_dict",
    "bytes_to_numpy",
    "bytes_to_torchmodel",
    "dict_to_bytes",
    "fedavg",
    "numpy_to_bytes",
    "torchmodel_to_bytes",
]
