"""manta-mqtt: run Manta-style swarm tasks on edge fleets connected only by an MQTT broker."""

__version__ = "0.1.0"
