"""Real brokers for the tests: amqtt in-process, and a Mosquitto the fixture starts itself on a
free loopback port with the project's own config (never the system one, never port 1883).

With ``MANTA_REQUIRE_MOSQUITTO=1`` (set by .ci/run) a missing Mosquitto fails the tests
instead of skipping them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import MosquittoProcess, find_mosquitto
from manta_mqtt.tools.processes import stop_process
from manta_mqtt.transport.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent


def _owner_key() -> tuple[Path, str]:
    """The tests' swarm owner: coordinators sign with SIGNING_KEY, test nodes trust TRUSTED_KEY."""
    folder = Path(tempfile.mkdtemp(prefix="manta-test-owner-"))
    public = OwnerKey.generate().save(folder / "owner.key")
    return folder / "owner.key", public.read_text().strip()


SIGNING_KEY, TRUSTED_KEY = _owner_key()

# No site profile of this machine's user (~/.config/manta-mqtt/profile.toml) or of the caller's
# environment may steer a test: every command sees an empty config directory unless a test says.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="manta-test-config-")
for _name in ("MANTA_MQTT_PROFILE", "MANTA_MQTT_USERNAME", "MANTA_MQTT_PASSWORD", "MANTA_MQTT_PASSWORD_FILE"):
    os.environ.pop(_name, None)


@dataclass
class BrokerUnderTest:
    name: str
    url: str
    version: str  # the MQTT version clients should speak to it
    port: int


@pytest.fixture
def amqtt_broker() -> Iterator[BrokerUnderTest]:
    with EmbeddedBroker(port=0) as broker:
        yield BrokerUnderTest("amqtt", broker.url, "3.1.1", broker.port)


def mosquitto_binary() -> str:
    binary = find_mosquitto()
    if binary is None:
        if os.environ.get("MANTA_REQUIRE_MOSQUITTO") == "1":
            pytest.fail("Mosquitto is required (MANTA_REQUIRE_MOSQUITTO=1) but is not installed")
        pytest.skip("Mosquitto is not installed (apt-get install mosquitto)")
    return binary


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerUnderTest]:
    server = MosquittoProcess(tmp_path / "mosquitto", binary=mosquitto_binary()).start()
    try:
        yield BrokerUnderTest("mosquitto", server.url, "5", server.port)
    finally:
        server.stop()


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    """Each test that takes ``broker`` runs once per real broker."""
    return request.getfixturevalue(f"{request.param}_broker" if request.param == "amqtt" else "mosquitto")


#: Run a command as uid/gid 65534 (nobody), with no supplementary groups.
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def skip_unless_nobody_can_run_this_checkout() -> None:
    """Tests that run our Python as another user need root, setpriv, and a checkout (and venv)
    that other users may read: a clone under a private folder (``mktemp -d`` is 0700) is not."""
    if os.geteuid() != 0 or subprocess.run(["which", "setpriv"], capture_output=True).returncode != 0:
        pytest.skip("needs root and setpriv, to run a command as another user")
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import manta_mqtt"], capture_output=True, cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"uid 65534 cannot run {sys.executable} with {ROOT} (a folder on the way is private)")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class NodeProcess:
    """An ``edge-node start`` process with its own config and data dir."""

    def __init__(
        self,
        tmp: Path,
        node_id: str,
        broker: BrokerUnderTest,
        datasets: dict[str, Path],
        password: str | None = None,
        trust: str = "",
    ) -> None:
        """``trust``: the [trust] table's lines; default: the test owner's key (SIGNING_KEY)."""
        self.node_id = node_id
        home = tmp / node_id
        home.mkdir(parents=True, exist_ok=True)
        lines = [
            "[node]",
            f'id = "{node_id}"',
            f'data_dir = "{home / "state"}"',
            "[broker]",
            f'url = "{broker.url}"',
            f'version = "{broker.version}"',
            *([f'username = "{node_id}"', f'password = "{password}"'] if password else []),
            "[datasets]",
            *(f'"{name}" = "{path}"' for name, path in datasets.items()),
            "[trust]",
            trust or f'keys = ["{TRUSTED_KEY}"]',
        ]
        self.config = home / "node.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = home / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_node.cli", "start", "--config", str(self.config), "-v"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "OMP_NUM_THREADS": "1"},  # several "devices" share the cores
            )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_nodes(tmp_path: Path) -> Iterator[object]:
    """``start_nodes(broker, ["n1", "n2"], datasets)`` starts node processes, stopped at teardown."""
    started: list[NodeProcess] = []

    def start(broker: BrokerUnderTest, ids: list[str], datasets: dict[str, Path]) -> list[NodeProcess]:
        nodes = [NodeProcess(tmp_path / "nodes", i, broker, datasets).start() for i in ids]
        started.extend(nodes)
        return nodes

    yield start
    for node in started:
        node.stop()
