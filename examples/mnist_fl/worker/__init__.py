"""The worker module: a package whose ``main()`` the node calls (Manta's module convention)."""

from .worker_task import main

__all__ = ["main"]
