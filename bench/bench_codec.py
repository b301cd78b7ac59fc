"""Encoding a model for the wire: the codec's native ndarray extension versus Manta's path
(numpy_to_bytes -> .npy bytes inside msgpack) and pickle, side by side.

    python bench/bench_codec.py [--params 26214400] [--repeat 5]

The default is the 100 MiB model of ``decode_GBps_100MB``. Decoding does not copy the arrays'
bytes (they stay views into the encoded buffer), so its time hardly grows with their size and
its "GB/s" is the arrays' size over the time to check the headers and wrap them: not a bandwidth.
"""

from __future__ import annotations

import argparse
import pickle
from typing import Any

import numpy as np
from _common import median_seconds, write

from manta_mqtt.protocol import codec
from manta_mqtt.runtime.utils import bytes_to_numpy, numpy_to_bytes


def model(params: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    layers = {}
    left = params
    i = 0
    while left > 0:
        n = min(left, params // 4 + 1)
        layers[f"layer{i}.weight"] = rng.standard_normal(n, dtype=np.float32)
        left -= n
        i += 1
    return layers


def measure(params: int, repeat: int) -> list[dict[str, Any]]:
    """Encode/decode seconds and GB/s (of the arrays' bytes, 10^9) of each case, codec first."""
    weights = model(params)
    array_bytes = sum(a.nbytes for a in weights.values())
    native = codec.encode(weights)
    npy = codec.encode(numpy_to_bytes(weights))
    pickled = pickle.dumps(weights, protocol=5)
    cases: dict[str, tuple[Any, Any]] = {
        "codec ndarray ext": (lambda: codec.encode(weights), lambda: codec.decode(native)),
        "numpy_to_bytes + msgpack (Manta)": (
            lambda: codec.encode(numpy_to_bytes(weights)),
            lambda: bytes_to_numpy(codec.decode(npy)),
        ),
        "pickle (unsafe on the network; reference only)": (
            lambda: pickle.dumps(weights, protocol=5),
            lambda: pickle.loads(pickled),  # our own bytes, for comparison only
        ),
    }
    sizes = {"codec ndarray ext": len(native), "numpy_to_bytes + msgpack (Manta)": len(npy)}
    sizes["pickle (unsafe on the network; reference only)"] = len(pickled)
    rows: list[dict[str, Any]] = []
    base_enc = base_dec = 0.0
    for name, (enc, dec) in cases.items():
        enc_s = median_seconds(enc, repeat)
        dec_s = median_seconds(dec, repeat)
        if not rows:
            base_enc, base_dec = enc_s, dec_s
        row = {
            "case": name,
            "bytes": sizes[name],
            "encode_s": round(enc_s, 6),
            "decode_s": round(dec_s, 6),
            "encode_GBps": round(array_bytes / enc_s / 1e9, 2),
            "decode_GBps": round(array_bytes / dec_s / 1e9, 2),
            "encode_vs_codec": round(enc_s / base_enc, 2),
            "decode_vs_codec": round(dec_s / base_dec, 2),
        }
        print(row)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=int, default=100 * 1024 * 1024 // 4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = measure(args.params, args.repeat)
    write("codec", rows, params=args.params, repeat=args.repeat)


if __name__ == "__main__":
    main()
