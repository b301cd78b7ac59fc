"""The end-to-end counter swarm on NATS and RabbitMQ, one server and clustered: the same exact
results as on Mosquitto and amqtt (tests/test_e2e_swarm.py).

Each class starts its broker(s) once (class scope, as in tests/test_brokers_nats_rabbit.py, so
that one setup runs at a time) on free loopback ports with the fixtures of
manta_mqtt/tools/nats.py and rabbitmq.py. Both speak MQTT 3.1.1 only. In a cluster the edge
nodes are spread over the members (node i on member i % n) and the coordinator talks to member
0, so that assignments, blobs, results and status cross the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from manta_mqtt.tools.nats import NatsCluster, NatsServer, find_nats_server
from manta_mqtt.tools.rabbitmq import RabbitCluster, RabbitNode, find_rabbitmq_server

from .conftest import BrokerUnderTest, NodeProcess
from .test_e2e_swarm import COUNTER, check_counter_run, numbers, run_swarm

NODES = ["n1", "n2", "n3"]

#: the ``start_nodes`` fixture of conftest.py
StartNodes = Callable[[BrokerUnderTest, list[str], dict[str, Path]], list[NodeProcess]]


def as_brokers(name: str, urls: list[str]) -> list[BrokerUnderTest]:
    """One :class:`BrokerUnderTest` per member (MQTT 3.1.1: all NATS and RabbitMQ speak)."""
    return [BrokerUnderTest(f"{name}[{i}]", url, "3.1.1", urlsplit(url).port or 1883) for i, url in enumerate(urls)]


def _need(binary: str | None, name: str) -> None:
    if binary is None:
        pytest.skip(f"{name} is not installed: cannot run the swarm on it")


class CounterSwarmOnMembers:
    """The checks each setup runs; a subclass provides ``members``, the broker(s) to use."""

    def test_counter_swarm_runs_to_stop(
        self,
        members: list[BrokerUnderTest],
        tmp_path: Path,
        start_nodes: StartNodes,
    ) -> None:
        """Three node processes spread over the members, three iterations, exact results."""
        data = {"numbers.npy": numbers(tmp_path)}
        for m, member in enumerate(members):
            start_nodes(member, NODES[m :: len(members)], data)  # node i on member i % n
        check_counter_run(run_swarm(COUNTER, members[0], tmp_path / "runs", len(NODES)), NODES)


class TestNatsServer(CounterSwarmOnMembers):
    @pytest.fixture(scope="class")
    @classmethod
    def members(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerUnderTest]]:
        _need(find_nats_server(), "nats-server")
        with NatsServer(tmp_path_factory.mktemp("nats")) as server:
            yield as_brokers("nats", [server.url])


@pytest.mark.slow
class TestNatsCluster(CounterSwarmOnMembers):
    @pytest.fixture(scope="class")
    @classmethod
    def members(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerUnderTest]]:
        _need(find_nats_server(), "nats-server")
        with NatsCluster(tmp_path_factory.mktemp("nats-cluster"), size=3) as cluster:
            yield as_brokers("nats-cluster", cluster.urls)


class TestRabbitNode(CounterSwarmOnMembers):
    @pytest.fixture(scope="class")
    @classmethod
    def members(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerUnderTest]]:
        _need(find_rabbitmq_server(), "rabbitmq-server")
        with RabbitNode(tmp_path_factory.mktemp("rabbit")) as node:
            yield as_brokers("rabbitmq", [node.url])


@pytest.mark.slow
class TestRabbitCluster(CounterSwarmOnMembers):
    @pytest.fixture(scope="class")
    @classmethod
    def members(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerUnderTest]]:
        _need(find_rabbitmq_server(), "rabbitmq-server")
        with RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"), size=2) as cluster:
            assert cluster.running_nodes() == sorted(node.nodename for node in cluster.nodes)
            yield as_brokers("rabbitmq-cluster", cluster.urls)
