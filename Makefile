# manta-mqtt: `make demo` runs the federated swarm; `make test` runs the suite.
# `make test-slow` runs the cluster and failover tests `make test` leaves out (CI runs both).
# Both set up everything first (a .venv with pinned torch, and Mosquitto for the tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CPU build: an unpinned torch would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
# Flower, for the benchmarks' comparison only: in a venv of its own, made by `make bench` and
# `make bench-quick` (never by `make test`); no torch there.
BENCH_VENV   := .bench-venv
FLWR_VERSION := 1.42.0
BENCH_STAMP  := $(BENCH_VENV)/.installed-flwr-$(FLWR_VERSION)

.PHONY: setup demo test test-slow lint unit bench bench-quick bench-venv clean mosquitto pi-check systemd-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,torch]'
	touch $(STAMP)

# The tests start their own Mosquitto on a free port; they only need the binary.
mosquitto:
	@test -x /usr/sbin/mosquitto || command -v mosquitto >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto)

demo: setup
	$(BIN)/python examples/mnist_fl/run_demo.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check manta_mqtt manta_light edge_node tests bench
	$(BIN)/mypy

# The suite but its `slow` tests (broker clusters, failover: a few minutes more); CI runs both.
test: setup mosquitto lint
	$(BIN)/python -m pytest -q -rs -m "not slow"

test-slow: setup mosquitto
	$(BIN)/python -m pytest -q -rs -m slow

unit: setup
	$(BIN)/python -m pytest -q -rs --ignore=tests/test_e2e_swarm.py --ignore=tests/chaos --ignore=tests/test_coordinator_threads.py

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q flwr==$(FLWR_VERSION)
	rm -f $(BENCH_VENV)/.installed-*
	touch $(BENCH_STAMP)

# Issue 9's figures, measured in one run: bench/results/latest.json and docs/benchmarks.md.
# Starts its own Mosquitto, edge-node and Flower processes; not part of `make test`.
bench: setup mosquitto bench-venv
	$(BIN)/python bench/run_all.py

bench-quick: setup mosquitto bench-venv
	$(BIN)/python bench/run_all.py --quick

# An edge node on Debian bookworm arm64 (emulated by qemu-user) installed as docs/deploy.md says,
# in a small swarm against a broker on this host. Needs root; not part of `make test`.
pi-check: setup mosquitto
	$(BIN)/python deploy/pi_check.py

# The edge node's unit, hardening and all, under a real systemd: a Debian bookworm root booted
# with systemd-nspawn, a swarm, then `systemctl stop` during a long task. Root; not in `make test`.
systemd-check: setup mosquitto
	$(BIN)/python deploy/systemd_check.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .demo manta_runs .pytest_cache .mypy_cache .ruff_cache
