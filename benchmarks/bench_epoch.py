"""One epoch in MONAI's ``SupervisedTrainer`` per mode: plain Adam against SAM and the pass-skipping modes.

Every mode runs the same network, data and ``SharpnessAwareIteration``; only the optimizer (and, for the
late phase, the iteration's ``start_fraction``) differs. A forward hook on the network COUNTS the forward
passes, so the table proves that ``interval``, LookSAM and the late phase really skip passes, and prices
them: ``x adam`` is the cost of one step relative to Adam's, ``x adam / passes`` the same divided by the
counted passes (1.0 = the method costs exactly its extra passes, nothing more).

Data: synthetic breast-ultrasound phantom images (``monai_sam.data.phantom``) held in memory, so the epoch
measures training, not image loading. Output decollation is off (identical for every mode; it would only
dilute the ratios). A short untimed epoch of every mode warms up allocators and optimizer state first;
then the modes are timed in interleaved, rotated rounds (``--repeats``) and the medians are reported, so
slow drifts of a shared machine hit all modes alike. On a machine busy with other jobs use ``--threads 1``:
with more threads than free cores, OpenMP barriers in BatchNorm turn contention into 10x slowdowns.

Usage::

    python benchmarks/bench_epoch.py                           # DenseNet121, 160 images 1x128x128, batch 8
    python benchmarks/bench_epoch.py --model resnet18 --modes adam,sam,gsam,asam
    python benchmarks/bench_epoch.py --images 16 --size 32 --batch 2 --repeats 1 --threads 1   # smoke
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import monai
import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.networks import nets
from tqdm.auto import tqdm

from monai_sam.data.phantom import PHANTOM_CLASSES, simulate_bmode
from monai_sam.engines import SharpnessAwareIteration
from monai_sam.optimizers import create_optimizer

RHO = 0.05
LR = 1e-4


@dataclass(frozen=True)
class Mode:
    """One row of the benchmark: an optimizer built by name plus options of the iteration function.

    Args:
        optimizer: a name for :func:`monai_sam.optimizers.create_optimizer` (base optimizer: Adam).
        kwargs: the optimizer's keyword arguments besides ``lr``.
        iteration: keyword arguments of :class:`~monai_sam.engines.SharpnessAwareIteration`.
    """

    optimizer: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    iteration: dict[str, Any] = field(default_factory=dict)

    @property
    def interval(self) -> int:
        """Steps between two full method steps (LookSAM's ``k``)."""
        return int(self.kwargs.get("interval", self.kwargs.get("k", 1)))

    def expected_passes(self, steps: int, full_passes: int) -> float:
        """Average forward passes per step over an epoch of ``steps`` steps, from the mode's schedule.

        Late phase: the first ``round(start_fraction * steps)`` steps run one pass; from there on, every
        ``interval``-th step runs ``full_passes`` and the others one.
        """
        start = round(self.iteration.get("start_fraction", 0.0) * steps)
        full = sum(1 for i in range(start, steps) if (i - start) % self.interval == 0)
        return (steps + (full_passes - 1) * full) / steps


MODES: dict[str, Mode] = {
    "adam": Mode("adam"),
    "sam": Mode("sam", {"rho": RHO}),
    "sam-interval5": Mode("sam", {"rho": RHO, "interval": 5}),
    "looksam-k5": Mode("looksam", {"rho": RHO, "k": 5, "alpha": 0.7}),
    "sam-late50": Mode("sam", {"rho": RHO}, {"start_fraction": 0.5}),
    "gsam": Mode("gsam", {"rho": RHO}),
    "asam": Mode("asam", {"rho": 0.5}),
}
DEFAULT_MODES = "adam,sam,sam-interval5,looksam-k5,sam-late50"
NETWORKS = {
    "densenet121": lambda n: nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=n),
    "resnet18": lambda n: nets.resnet18(spatial_dims=2, n_input_channels=1, num_classes=n),
    "resnet50": lambda n: nets.resnet50(spatial_dims=2, n_input_channels=1, num_classes=n),
}


def iteration_supports(mode: Mode) -> bool:
    """True when this monai_sam's ``SharpnessAwareIteration`` accepts the mode's iteration options."""
    accepted = inspect.signature(SharpnessAwareIteration).parameters
    return all(key in accepted for key in mode.iteration)


def build_trainer(
    mode: Mode,
    network: torch.nn.Module,
    loader: Any,
    device: str | torch.device,
    iteration_kwargs: dict[str, Any] | None = None,
    **trainer_kwargs: Any,
) -> SupervisedTrainer:
    """A one-epoch ``SupervisedTrainer`` running ``mode`` through ``SharpnessAwareIteration``.

    Args:
        mode: the optimizer and iteration options.
        network: the model (its parameters are optimised).
        loader: the training data (a ``DataLoader`` or, with ``epoch_length``, any iterable).
        device: where the trainer moves the batches.
        iteration_kwargs: extra ``SharpnessAwareIteration`` arguments for every mode.
        trainer_kwargs: extra ``SupervisedTrainer`` arguments (``epoch_length``, ``amp``, ``compile``...).
    """
    optimizer = create_optimizer(mode.optimizer, network.parameters(), base="adam", lr=LR, **mode.kwargs)
    return SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(),
        iteration_update=SharpnessAwareIteration(**mode.iteration, **(iteration_kwargs or {})),
        decollate=False,
        **trainer_kwargs,
    )


class ForwardCounter:
    """Counts forward calls of a module through a forward hook (every pass of every step)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        """Detach the hook."""
        self._handle.remove()


def phantom_loader(images: int, size: int, batch: int, seed: int = 0) -> DataLoader:
    """In-memory phantom images (``1 x size x size`` in [0, 1]) with their class index, in fixed order."""
    rng = np.random.default_rng(seed)
    kinds = [PHANTOM_CLASSES[i % len(PHANTOM_CLASSES)] for i in range(images)]
    pixels = torch.from_numpy(simulate_bmode(kinds, size, 0.5, rng)).float().div_(255.0).unsqueeze(1)
    items = [
        {"image": pixels[i], "label": torch.tensor(PHANTOM_CLASSES.index(k))} for i, k in enumerate(kinds)
    ]
    return DataLoader(Dataset(items), batch_size=batch, shuffle=False, num_workers=0)


def run_epoch(mode: Mode, model: str, loader: DataLoader, epoch_length: int | None = None) -> dict[str, Any]:
    """Train one epoch of ``mode``; return its seconds, steps and counted forward passes."""
    torch.manual_seed(0)
    network = NETWORKS[model](len(PHANTOM_CLASSES))
    trainer = build_trainer(mode, network, loader, "cpu", epoch_length=epoch_length)
    counter = ForwardCounter(network)
    times: dict[str, float] = {}
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: times.__setitem__("start", time.perf_counter()))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: times.__setitem__("end", time.perf_counter()))
    trainer.run()
    counter.remove()
    steps = trainer.state.iteration
    full_passes = getattr(trainer.optimizer, "passes_per_step", 1)
    return {
        "seconds": times["end"] - times["start"],
        "steps": steps,
        "forward_passes": counter.count,
        "expected_passes_per_step": mode.expected_passes(steps, full_passes),
    }


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median epoch time of the repeats of one mode (pass counts are identical across repeats)."""
    counts = {r["forward_passes"] for r in runs}
    if len(counts) != 1:
        raise RuntimeError(f"{name}: forward-pass counts differ between repeats: {sorted(counts)}")
    seconds = statistics.median(r["seconds"] for r in runs)
    steps = runs[0]["steps"]
    return {
        "mode": name,
        "steps": steps,
        "epoch_s": seconds,
        "s_per_step": seconds / steps,
        "passes_per_step": runs[0]["forward_passes"] / steps,
        "expected_passes_per_step": runs[0]["expected_passes_per_step"],
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Per-step cost relative to adam's, also per counted pass (needs an ``adam`` row)."""
    ref = next((r for r in rows if r["mode"] == "adam"), None)
    for row in rows:
        row["ratio_to_adam"] = row["s_per_step"] / ref["s_per_step"] if ref else float("nan")
        passes = row["passes_per_step"] / ref["passes_per_step"] if ref else float("nan")
        row["ratio_per_pass"] = row["ratio_to_adam"] / passes


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the summarised rows."""
    lines = [
        "| mode | steps | epoch s | s/step | x adam | passes/step (counted) | passes/step (theory) "
        "| x adam / passes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['steps']} | {r['epoch_s']:.2f} | {r['s_per_step']:.3f} | "
            f"{r['ratio_to_adam']:.2f} | {r['passes_per_step']:.2f} | {r['expected_passes_per_step']:.2f} | "
            f"{r['ratio_per_pass']:.2f} |"
        )
    return "\n".join(lines)


def parse_modes(text: str) -> list[str]:
    """Validate the comma-separated ``--modes``."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODES]
    if unknown or not names:
        raise SystemExit(f"--modes: unknown mode(s) {unknown or text!r}; choose from {list(MODES)}")
    return names


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the table rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(NETWORKS), default="densenet121")
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, from {list(MODES)}")
    parser.add_argument("--images", type=int, default=160, help="images in the epoch")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (>= 32)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed epochs per mode (median)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of the untimed warm-up epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="also write the rows and settings to this JSON file")
    args = parser.parse_args(argv)
    if args.images < args.batch or args.repeats < 1 or args.warmup_steps < 0:
        parser.error("need --images >= --batch, --repeats >= 1 and --warmup-steps >= 0")
    torch.set_num_threads(args.threads)
    names = parse_modes(args.modes)
    missing = [n for n in names if not iteration_supports(MODES[n])]
    if missing:
        needs = [MODES[n].iteration for n in missing]
        print(f"skipped {missing}: this monai_sam's SharpnessAwareIteration does not accept {needs}")
        names = [n for n in names if n not in missing]

    loader = phantom_loader(args.images, args.size, args.batch)
    load_before = os.getloadavg()
    if args.warmup_steps:
        for name in tqdm(names, desc="warm-up", leave=False):
            run_epoch(MODES[name], args.model, loader, epoch_length=min(args.warmup_steps, len(loader)))
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    schedule = [(r, names[r % len(names) :] + names[: r % len(names)]) for r in range(args.repeats)]
    with tqdm(total=args.repeats * len(names), desc="epochs", leave=False) as bar:
        for _, order in schedule:
            for name in order:
                runs[name].append(run_epoch(MODES[name], args.model, loader))
                bar.update()
    load_after = os.getloadavg()

    rows = [summarise(n, runs[n]) for n in names]
    add_ratios(rows)
    settings = {
        "model": args.model,
        "images": args.images,
        "size": args.size,
        "batch": args.batch,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "load_before": load_before,
        "load_after": load_after,
    }
    print(
        f"torch {torch.__version__}, monai {monai.__version__}, {settings['threads']} threads, "
        f"{args.model}, {args.images} images 1x{args.size}x{args.size}, batch {args.batch}, "
        f"median of {args.repeats} interleaved epochs"
    )
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*load_before))
    print(format_table(rows))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*load_after))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"settings": settings, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
