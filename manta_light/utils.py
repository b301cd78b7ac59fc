"""``from manta_light.utils import numpy_to_bytes, bytes_to_numpy, ...``."""

from manta_mqtt.runtime.utils import (
    bytes_to_dict,
    bytes_to_numpy,
    bytes_to_torchmodel,
    dict_to_bytes,
    numpy_to_bytes,
    torchmodel_to_bytes,
)

__all__ = [
    "bytes_to_dict",
    "bytes_to_numpy",
    "bytes_to_torchmodel",
    "dict_to_bytes",
    "numpy_to_bytes",
    "torchmodel_to_bytes",
]
