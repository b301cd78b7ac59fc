"""The no-op FedAvg round of bench/swarms/noop_fedavg, as a Flower App (bench/bench_flower.py)."""
