"""Peak and persistent memory of one step of every sharpness-aware method over its base optimizer.

For each method (and for the efficient modes on an off-step) the same model, batch and warm-up steps are run
once with the method and once with the plain base optimizer, under the CPU profiler
(:func:`monai_sam.profiling.measure_memory_overhead`). Figures are in parameter-sized buffers: SAM's weight
backup is 1.0. "transient" = peak minus persistent: what the step itself adds on top of the buffers the
method keeps between steps. The first row is a calibration: an SGD that holds one clone of the parameters
during its step must read 1.00 / 0.00.

The peak is taken over the whole step, passes included, so a method's temporaries that fit under the
activations of the backward pass, or under the base optimizer's own temporaries (Adam allocates some), cost
nothing extra; ``--base sgd`` with a small ``--size`` shows the optimizer's buffers with the least masking.

Usage::

    python benchmarks/bench_memory.py                                   # DenseNet121 2-D, 64x64, base adam
    python benchmarks/bench_memory.py --model resnet50 --base sgd --size 32
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from bench_optimizer_step import MODELS, base_kwargs, build_model
from tqdm import tqdm

from monai_sam.optimizers import available_optimizers, create_optimizer
from monai_sam.optimizers.factory import METHODS, PLAIN_OPTIMIZERS
from monai_sam.profiling import CalibrationSGD, StepSetup, measure_memory_overhead

#: arguments a method cannot run without
REQUIRED: dict[str, dict[str, Any]] = {"bsam": {"num_data": 1000}}
OFF_STEP_MODES: list[tuple[str, dict[str, Any]]] = [("sam", {"interval": 5}), ("looksam", {"k": 5})]


def rows(base: str) -> list[tuple[str, str, Callable, Callable, int]]:
    """(label, step kind, method builder, base builder, warm-up steps) of every measurement."""

    def method(name: str, **kwargs: Any) -> Callable:
        if getattr(METHODS[name], "own_update", False):  # bSAM: its own update, no base optimizer
            return lambda params: create_optimizer(name, params, lr=1e-3, **REQUIRED.get(name, {}), **kwargs)
        return lambda params: create_optimizer(
            name, params, base=base, lr=1e-3, **base_kwargs(name, base), **kwargs
        )

    def plain(params, name: str = ""):
        return create_optimizer(base, params, lr=1e-3, **base_kwargs(name, base))

    def sgd(params):
        return torch.optim.SGD(params, lr=1e-3)

    out = [("calibration: SGD + 1 clone", "full", lambda p: CalibrationSGD(p, clones=1, lr=1e-3), sgd, 1)]
    for name in available_optimizers():
        if name in PLAIN_OPTIMIZERS:
            continue
        # LookSAM's default k=5: warm up 5 steps so the measured step (index 5) is a full SAM step.
        reference = (lambda params, name=name: plain(params, name)) if base_kwargs(name, base) else plain
        out.append((name, "full", method(name), reference, 5 if name == "looksam" else 1))
    for name, kwargs in OFF_STEP_MODES:
        options = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        out.append((f"{name} ({options})", "off-step", method(name, **kwargs), plain, 1))
    return out


def main() -> None:
    """Parse arguments, measure every row, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="densenet121", choices=sorted(MODELS))
    parser.add_argument("--base", default="adam", choices=sorted(PLAIN_OPTIMIZERS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="image side (vit_small: a multiple of 8)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    y = torch.arange(args.batch) % 2
    setup = StepSetup(lambda: build_model(args.model, args.size), x, y)
    params = sum(p.numel() for p in build_model(args.model, args.size).parameters())
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.model} 2-D "
        f"({params / 1e6:.2f} M params, one buffer = {4 * params / 2**20:.1f} MiB fp32), batch {args.batch}, "
        f"{args.size}x{args.size}x1, base {args.base}, CPU profiler, load avg {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'method':28s} {'step':8s} {'peak extra MiB':>14s} {'peak buffers':>12s} {'persistent':>10s} "
        f"{'transient':>9s}"
    )
    for label, kind, build, build_base, warmup in tqdm(rows(args.base), desc="memory", leave=False):
        result = measure_memory_overhead(replace(setup, warmup_steps=warmup), build, build_base)
        peak, kept = result.extra_peak_buffers, result.persistent_extra_buffers
        tqdm.write(
            f"{label:28s} {kind:8s} {result.extra_peak_bytes / 2**20:14.1f} {peak:12.2f} {kept:10.2f} "
            f"{peak - kept:9.2f}"
        )
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
