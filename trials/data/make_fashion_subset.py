"""Rebuild ``fashion_mnist_small.npz``, the Fashion-MNIST subset bundled with the trials.

Source: the official Fashion-MNIST idx files (Debian package ``dataset-fashion-mnist`` installs them
in /usr/share/datasets/fashion-mnist/; the same files torchvision's ``FashionMNIST`` keeps in raw/).

    python trials/data/make_fashion_subset.py [--src DIR] [--out FILE]

Output arrays (uint8 images N x 28 x 28, int64 labels):
  train_x, train_y  -- 300 images per class from the official *train* split (3,000), ordered so that
                       the first k images of each class are a seeded random sample of that class;
  val_x, val_y      -- 200 images per class from the official *test* split (2,000), shuffled so
                       every prefix is roughly balanced (val_size takes a prefix);
  classes           -- the ten class names.
The selection is deterministic (numpy default_rng(seed)); re-running gives byte-identical arrays.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import FASHION_CLASSES, read_idx  # noqa: E402

TRAIN_PER_CLASS = 300
VAL_PER_CLASS = 200


def balanced_pick(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` random samples of each class, interleaved class by class."""
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)]
    return np.stack(picks, axis=1).reshape(-1)  # row i holds sample i of every class


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=str(HERE / "fashion_mnist_small.npz"))
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    src = Path(args.src)
    tx = read_idx(src / "train-images-idx3-ubyte.gz")
    ty = read_idx(src / "train-labels-idx1-ubyte.gz")
    vx = read_idx(src / "t10k-images-idx3-ubyte.gz")
    vy = read_idx(src / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(args.seed)
    ti = balanced_pick(ty, TRAIN_PER_CLASS, rng)
    vi = rng.permutation(balanced_pick(vy, VAL_PER_CLASS, rng))
    np.savez_compressed(
        args.out,
        train_x=tx[ti].astype(np.uint8),
        train_y=ty[ti].astype(np.int64),
        val_x=vx[vi].astype(np.uint8),
        val_y=vy[vi].astype(np.int64),
        classes=np.array(FASHION_CLASSES),
        source_train_index=ti.astype(np.int32),
        source_test_index=vi.astype(np.int32),
    )
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: train {len(ti)}, val {len(vi)}, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
