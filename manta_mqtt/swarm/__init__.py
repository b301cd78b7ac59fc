"""Defining swarms: ``Swarm``, ``Module`` and ``Task``, modelled on Manta's SDK."""

from .graph import Task
from .module import Module
from .swarm import Swarm, load_swarm

__all__ = ["Module", "Swarm", "Task", "load_swarm"]
