#!/bin/sh
# Install a manta-mqtt edge node as a systemd service, the steps of docs/deploy.md, as root:
#
#   sudo sh deploy/install-node.sh KIT PACKAGE...
#
# KIT: the node's kit from `manta-mqtt site add-node` (node.toml, ca.crt, NODE.crt, NODE.key).
# PACKAGE: what pip installs into /opt/manta: a manta-mqtt wheel, plus `torch==2.10.0` only if
# the swarm's tasks need torch (on arm64, later torch releases on PyPI are CUDA builds).
# Then it enables the unit; start it after naming the datasets in /etc/manta/node.toml.
set -eu

if [ "$#" -lt 2 ] || [ ! -f "$1/node.toml" ]; then
    echo "usage: sh deploy/install-node.sh KIT PACKAGE...   (KIT holds node.toml)" >&2
    exit 2
fi
kit=$1
shift
unit=$(dirname "$0")/systemd/manta-edge-node.service
key=$(ls "$kit"/*.key)
node=$(basename "$key" .key)

# 1. A system user without a login, whose home is the node's data folder.
id manta >/dev/null 2>&1 || useradd --system --home-dir /var/lib/manta-node --no-create-home --shell /usr/sbin/nologin manta
# 2. A venv owned by root: the agent cannot change its own code.
python3 -m venv /opt/manta
/opt/manta/bin/pip install --quiet "$@"
# 3. The kit in /etc/manta: the key readable by manta only, its data in /var/lib/manta-node.
install -d -m 750 -o root -g manta /etc/manta
install -m 644 "$kit/node.toml" "$kit/ca.crt" "$kit/$node.crt" /etc/manta/
install -m 600 -o manta -g manta "$key" /etc/manta/
install -d -m 700 -o manta -g manta /var/lib/manta-node
sed -i 's|^data_dir = .*|data_dir = "/var/lib/manta-node"|' /etc/manta/node.toml
# 4. The unit, enabled at boot.
install -m 644 "$unit" /etc/systemd/system/
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable manta-edge-node
else  # systemd is not running (a chroot, an image being prepared): enable it offline
    systemctl --root=/ enable manta-edge-node
fi
echo "installed $node: name its datasets in /etc/manta/node.toml, then: systemctl start manta-edge-node"
