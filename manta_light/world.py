"""``from manta_light.world import World, Globals, Results``."""

from manta_mqtt.runtime.world import Globals, ResultMethod, Results, World

__all__ = ["Globals", "ResultMethod", "Results", "World"]
