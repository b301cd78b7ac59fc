"""The edge-node agent: runs swarm tasks on a device's private data. Imports paho, msgpack and
msgspec at start; numpy and cryptography only when work arrives (the first array, the first
signed assignment), so an idle agent stays small; never torch: tasks that need torch import it
in their own process.
"""
