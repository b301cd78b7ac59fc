"""The edge-node agent: runs swarm tasks on a device's private data. Imports paho, msgpack and
numpy (never torch): tasks that need torch import it in their own process.
"""
