"""The task runtime: the ``manta_light`` API, the agent-task channel and the task executor."""
