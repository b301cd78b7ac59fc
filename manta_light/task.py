"""``from manta_light.task import Task``."""

from manta_mqtt.runtime.task import Task

__all__ = ["Task"]
