"""Build the per-node data files from scikit-learn's bundled digits set.

The 8x8 digits (1797 images, no download) are scaled to [0, 1], shuffled with
a fixed seed and split evenly (IID) between the nodes; each node's share is
then split 80/20 into train and test sets and written to ``nodeK.npz`` with
the keys x_train, y_train, x_test and y_test.

Usage: python make_data.py [--nodes 3] [--out data] [--seed 0]
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def make_partitions(n_nodes: int, seed: int = 0, test_fraction: float = 0.2) -> list[dict[str, np.ndarray]]:
    """Return one dict of train/test arrays per node."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    parts = []
    for idx in np.array_split(order, n_nodes):
        n_test = round(len(idx) * test_fraction)
        test, train = idx[:n_test], idx[n_test:]
        parts.append(
            {
                "x_train": x[train],
                "y_train": y[train],
                "x_test": x[test],
                "y_test": y[test],
            }
        )
    return parts


def main() -> None:
    """Parse the arguments and write one npz file per node."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "data",
        help="output directory (default: data/ next to this script)",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(make_partitions(args.nodes, args.seed), start=1):
        path = args.out / f"node{k}.npz"
        np.savez_compressed(path, **part)
        print(f"{path}: {len(part['y_train'])} train, {len(part['y_test'])} test")


if __name__ == "__main__":
    main()
