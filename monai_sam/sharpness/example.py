"""Runnable demo: train a tiny MONAI DenseNet121 on a synthetic task and plot its loss landscape.

    python -m monai_sam.sharpness.example --output docs/images

writes ``landscape_example.png`` (2-D) and ``landscape_example_1d.png`` and prints the sharpness
measures. Everything is synthetic and seeded; it runs in well under a minute on one CPU core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121
from torch import nn

from monai_sam.sharpness import (
    adaptive_sharpness,
    hessian_top_eigenvalue,
    hessian_trace,
    loss_landscape_1d,
    loss_landscape_2d,
    plot_landscape_1d,
    plot_landscape_2d,
    sam_sharpness,
    worst_case_sharpness,
)


def synthetic_batches(count: int, size: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Batches of 32x32 noise images; class 1 has a bright disc at a random place."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    batches = []
    for _ in range(count):
        labels = torch.randint(0, 2, (size,), generator=generator)
        centres = torch.randint(8, 24, (size, 2), generator=generator).float()
        dist = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
        discs = (dist < 25).float() * labels[:, None, None]
        images = discs + 0.5 * torch.randn(size, 32, 32, generator=generator)
        batches.append({"image": images[:, None], "label": labels})
    return batches


def main(output: str = "docs/images", steps: int = 60, points: int = 13) -> None:
    """Train briefly, print the measures and write the landscape PNGs to ``output``."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train = synthetic_batches(steps, 16, generator)
    measure_on = synthetic_batches(2, 16, generator)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2, init_features=8, growth_rate=4)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for batch in train:
        optimizer.zero_grad()
        loss_fn(net(batch["image"]), batch["label"]).backward()
        optimizer.step()
    opts = {"max_batches": 2, "progress": False}
    print(hessian_top_eigenvalue(net, measure_on, loss_fn, iters=20, **opts))
    print(hessian_trace(net, measure_on, loss_fn, probes=10, **opts))
    print(worst_case_sharpness(net, measure_on, loss_fn, **opts))
    print(adaptive_sharpness(net, measure_on, loss_fn, **opts))
    print(sam_sharpness(net, measure_on, loss_fn, **opts))
    out = Path(output)
    plane = loss_landscape_2d(net, measure_on, loss_fn, span=(-1.0, 1.0), points=points, **opts)
    plot_landscape_2d(
        plane, out / "landscape_example.png", title="DenseNet121 (tiny), eval mode", log_scale=True
    )
    line = loss_landscape_1d(net, measure_on, loss_fn, span=(-1.0, 1.0), points=2 * points + 1, **opts)
    plot_landscape_1d(
        line, out / "landscape_example_1d.png", title="DenseNet121 (tiny), eval mode", log_scale=True
    )
    print(f"wrote {out / 'landscape_example.png'} and {out / 'landscape_example_1d.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="docs/images", help="folder for the PNGs")
    parser.add_argument("--steps", type=int, default=60, help="training steps")
    parser.add_argument("--points", type=int, default=13, help="2-D grid points per axis")
    args = parser.parse_args()
    main(args.output, args.steps, args.points)
