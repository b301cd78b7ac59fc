"""``from manta_light.local import Local``."""

from manta_mqtt.runtime.local import Local

__all__ = ["Local"]
