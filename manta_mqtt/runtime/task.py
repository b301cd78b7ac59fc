"""``Task``: the base class of user tasks (Manta's ``manta_light.task.Task``)."""

from __future__ import annotations

import logging
from abc import ABC

from .client import current
from .local import Local
from .world import World


class Task(ABC):  # noqa: B024 - Manta's Task declares no abstract method; users define run()
    """Subclass it, define ``run()``, and give the module a ``main()`` that calls it.

    The constructor takes no arguments: the task finds its host through the environment.
    """

    def __init__(self) -> None:
        client = current()
        context = client.context
        self.name = type(self).__name__
        self.node_id: str = context["node"]
        self.swarm_id: str = context["swarm"]
        self.task_id: str = context["task"]
        self.world = World(client)
        self.local = Local(client)
        self.logger = logging.getLogger(f"manta.task.{self.task_id}")
