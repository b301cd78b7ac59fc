"""The site profile: an operator types `manta-mqtt nodes` with no flags, and a mistake in it is
one line that names the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from manta_mqtt.cli.profile import ProfileError, find, load
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import BrokerUnderTest
from ..test_acl import USERS, secured  # noqa: F401  (the fixture)

MANTA = [sys.executable, "-m", "manta_mqtt.cli.main"]


def manta(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [*MANTA, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env={**os.environ, **(env or {})}
    )


def test_relative_paths_start_at_the_profile(tmp_path: Path) -> None:
    (tmp_path / "manta.toml").write_text('[broker]\nurl = "mqtts://b:8884"\ntls_ca = "kit/ca.crt"\nversion = "5"\n')
    profile = find(None, environ={}, cwd=tmp_path)
    assert profile is not None
    assert profile.url == "mqtts://b:8884" and profile.tls_ca == tmp_path / "kit" / "ca.crt" and profile.version == "5"


def test_the_order_explicit_then_environment_then_here_then_the_user_config(tmp_path: Path) -> None:
    here, user, explicit = tmp_path / "here", tmp_path / "xdg" / "manta-mqtt", tmp_path / "explicit.toml"
    here.mkdir()
    user.mkdir(parents=True)
    (user / "profile.toml").write_text('[broker]\nurl = "mqtt://user:1"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert find(None, environ=env, cwd=here).url == "mqtt://user:1"  # type: ignore[union-attr]
    (here / "manta.toml").write_text('[broker]\nurl = "mqtt://here:1"\n')
    assert find(None, environ=env, cwd=here).url == "mqtt://here:1"  # type: ignore[union-attr]
    explicit.write_text('[broker]\nurl = "mqtt://explicit:1"\n')
    assert find(None, environ={**env, "MANTA_MQTT_PROFILE": str(explicit)}, cwd=here).url == "mqtt://explicit:1"  # type: ignore[union-attr]
    assert find(explicit, environ=env, cwd=here).url == "mqtt://explicit:1"  # type: ignore[union-attr]
    with pytest.raises(ProfileError, match="no such profile"):
        find(tmp_path / "missing.toml", environ=env, cwd=here)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[broker]\npasword_file = "x"\n', "unknown key 'pasword_file' (did you mean 'password_file'?)"),
        ('[brokers]\nurl = "x"\n', "unknown key 'brokers' (did you mean 'broker'?)"),
        ("[broker]\nurl = 1883\n", "url: expected a non-empty string"),
        ('[broker]\nversion = "4"\n', "version: '4' is not auto, 5 or 3.1.1"),
        ("[broker\n", "Expected ']'"),
    ],
)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "manta.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def announce(broker_url: str, user: str) -> None:
    address = BrokerAddress.parse(broker_url).with_credentials(user, USERS[user])
    link = MqttLink(user, address, version="5", session_expiry=0)
    assert link.start(timeout=5)
    link.publish(topics.node_status(user), NodeStatus(user, "online", ["numbers.npy"]).to_bytes(), retain=True)
    link.stop()


def test_nodes_with_no_flags_uses_the_profile_and_explains_a_refusal(secured, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    announce(secured.url, "n1")
    (tmp_path / "coordinator.password").write_text(USERS["coordinator"] + "\n")
    (tmp_path / "coordinator.password").chmod(0o600)
    (tmp_path / "manta.toml").write_text(
        f'[broker]\nurl = "{secured.url}"\nusername = "coordinator"\npassword_file = "coordinator.password"\n'
    )
    listed = manta("nodes", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("n1") and "online" in listed.stdout

    (tmp_path / "coordinator.password").write_text("wrong\n")
    refused = manta("nodes", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: the broker at 127.0.0.1:{secured.port} refused user 'coordinator': not authorised "
        "(check --username and --password-file)"
    ]
    elsewhere = manta("nodes", "--broker", "mqtt://127.0.0.1:9", cwd=tmp_path)  # the command line wins
    assert "127.0.0.1:9: connection refused" in elsewhere.stderr and elsewhere.returncode == 1


def test_a_broken_profile_is_one_line(tmp_path: Path, mosquitto: BrokerUnderTest) -> None:
    (tmp_path / "manta.toml").write_text('[broker]\nurll = "x"\n')
    result = manta("nodes", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key 'urll' (did you mean 'url'?)" in result.stderr and "Traceback" not in result.stderr
