"""Draw a grid of synthetic B-mode phantom samples, and optionally measure how learnable the phantom is.

Usage::

    python benchmarks/make_phantom_grid.py                       # writes docs/images/phantom_grid.png
    python benchmarks/make_phantom_grid.py --learnability        # also trains a tiny CNN per difficulty

The learnability check trains a 4-layer CNN (about 60 k parameters, 1 CPU thread) on 100 images per class
at 64 px for a fixed wall-clock budget and prints the accuracy on 100 fresh images per class.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from monai_sam.data.phantom import PHANTOM_CLASSES, simulate_bmode

REPO = Path(__file__).resolve().parents[1]


def draw_grid(out: Path, difficulties: list[float], per_cell: int, image_size: int, seed: int) -> Path:
    """Save a classes x (difficulty, sample) grid of phantom images to ``out``."""
    rng = np.random.default_rng(seed)
    cols = len(difficulties) * per_cell
    fig, axes = plt.subplots(len(PHANTOM_CLASSES), cols, figsize=(1.5 * cols, 1.6 * len(PHANTOM_CLASSES)))
    for row, kind in enumerate(PHANTOM_CLASSES):
        for block, difficulty in enumerate(difficulties):
            images = simulate_bmode([kind] * per_cell, image_size, difficulty, rng)
            for k, image in enumerate(images):
                ax = axes[row, block * per_cell + k]
                ax.imshow(image, cmap="gray", vmin=0, vmax=255)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0 and k == 0:
                    ax.set_title(f"difficulty {difficulty:g}", loc="left", fontsize=9)
                if block == 0 and k == 0:
                    ax.set_ylabel(kind, fontsize=10)
    fig.tight_layout(pad=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    Image.open(out).convert("L").save(out, optimize=True)  # grayscale content: keep the file small
    return out


def learnability(difficulty: float, seconds: float, seed: int = 0) -> float:
    """Test accuracy of a tiny CNN trained for ``seconds`` on the phantom at ``difficulty``."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.concatenate([simulate_bmode([k] * n, 128, difficulty, rng) for k in PHANTOM_CLASSES])
        x = torch.tensor(images, dtype=torch.float32)[:, None] / 255.0
        return F.avg_pool2d(x, 2), torch.arange(len(PHANTOM_CLASSES)).repeat_interleave(n)

    (x_train, y_train), (x_test, y_test) = sample(100), sample(100)
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    net = nn.Sequential(
        *layers, nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    net.append(nn.Linear(64, len(PHANTOM_CLASSES)))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            x = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, x_train[idx].flip(-1), x_train[idx])
            loss = F.cross_entropy(net(x), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float((net(x_test).argmax(1) == y_test).float().mean())


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "phantom_grid.png")
    parser.add_argument("--difficulties", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--per-cell", type=int, default=3, help="samples per class and difficulty")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learnability", action="store_true", help="train a tiny CNN per difficulty")
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per difficulty")
    args = parser.parse_args()
    print(f"wrote {draw_grid(args.out, args.difficulties, args.per_cell, args.image_size, args.seed)}")
    if args.learnability:
        for difficulty in args.difficulties:
            accuracy = learnability(difficulty, args.seconds, args.seed)
            print(
                f"difficulty {difficulty:g}: tiny-CNN test accuracy {accuracy:.3f} after {args.seconds:g} s"
            )


if __name__ == "__main__":
    main()
