"""What signed assignments cost: signing one (coordinator, once per node) and verifying it
(node, before it fetches anything), next to encoding and parsing the same assignment.

    python bench/bench_signing.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import time

from _common import write

from manta_mqtt.protocol.messages import Assignment, CodeRef
from manta_mqtt.protocol.signing import OwnerKey, Trust


def per_call(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(5):  # the best of 5 rounds: this machine is shared
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    key = OwnerKey.generate()
    trust = Trust([key.public])
    refs = {f"global-{i}": f"{i:064x}" for i in range(8)}
    plain = Assignment("swarm-1", 3, "worker", 0, CodeRef("ab" * 32, "worker"), refs, ["data.npz"], 600.0)
    signed = key.sign("node-1", plain)
    wire = signed.to_bytes()
    results = {
        "encode_s": per_call(plain.to_bytes, args.repeat),
        "parse_s": per_call(lambda: Assignment.parse(wire), args.repeat),
        "sign_s": per_call(lambda: key.sign("node-1", plain), args.repeat),
        "verify_s": per_call(lambda: trust.check("node-1", signed), args.repeat),
        "signed_bytes": len(wire),
        "unsigned_bytes": len(plain.to_bytes()),
    }
    for name, value in results.items():
        print(f"{name:>15}: {value * 1e6:8.1f} µs" if name.endswith("_s") else f"{name:>15}: {value} bytes")
    write("signing", [results])


if __name__ == "__main__":
    main()
