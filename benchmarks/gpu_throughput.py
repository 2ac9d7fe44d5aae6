"""Training throughput (images per second) of every method on a GPU, the way a fast MONAI user would train.

Each method trains in a MONAI ``SupervisedTrainer`` with ``SharpnessAwareIteration`` and:

- bf16 autocast (``amp=True, amp_kwargs={"dtype": torch.bfloat16}``; no GradScaler is needed for bf16);
- channels_last model and inputs (a ``prepare_batch`` that keeps the memory format);
- ``compile=True`` (MONAI's ``torch.compile`` of the network; one compiled network is shared by all methods,
  its weights reset before each, so only the first method of a model pays the compilation);
- synthetic batches generated once ON the device and cycled (no data-loading bottleneck).

Networks: MONAI ``resnet50`` (2-D, 3x224x224, batch 64) and ``ViT`` (ViT-B/16). For each method it prints
images/second after a warm-up, their fraction of Adam's (``of adam``), passes per step (counted by a
forward hook) and peak memory, and writes everything to a JSON file after every method (partial results
survive a kill). A total time budget (``--budget-s``) skips what would not fit, so the default run stays
under 5 minutes on one H200 (imports and CUDA start-up on top of the budget).

Usage::

    python benchmarks/gpu_throughput.py                                # GPU: writes $OUT/gpu_throughput.json
    python benchmarks/gpu_throughput.py --models resnet50 --seconds 20 # one network, longer windows
    python benchmarks/gpu_throughput.py --device cpu --smoke --no-compile   # CI: tiny, checks the code path

On the device machine (no MONAI there): carry wheels of ``monai`` and ``pytorch-ignite`` and run with
``PYTHONPATH=.`` from the repository root.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import monai
import torch
from ignite.engine import Engine, Events
from monai.networks import nets

from monai_sam.json_files import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))  # one table of modes, shared with bench_epoch.py
from bench_epoch import MODES, ForwardCounter, build_trainer

DEFAULT_METHODS = "adam,sam,asam,gsam,sam-interval5,looksam-k5"
NUM_CLASSES = 3
COMPILE_ALLOWANCE_S = 60  # headroom for compiling a network before its first method may start


def build_network(name: str, size: int, smoke: bool) -> torch.nn.Module:
    """A 2-D, 3-channel MONAI classifier: ``resnet50`` (``resnet10`` in smoke mode) or ``vit`` (B/16)."""
    if name == "resnet50":
        factory = nets.resnet10 if smoke else nets.resnet50
        return factory(spatial_dims=2, n_input_channels=3, num_classes=NUM_CLASSES)
    if name == "vit":
        dims = {"hidden_size": 64, "mlp_dim": 128, "num_layers": 2, "num_heads": 4} if smoke else {}
        patch = 8 if smoke else 16
        return nets.ViT(
            in_channels=3,
            img_size=(size, size),
            patch_size=(patch, patch),
            spatial_dims=2,
            classification=True,
            num_classes=NUM_CLASSES,
            **dims,
        )
    raise ValueError(f"--models: unknown network {name!r}; choose from ['resnet50', 'vit']")


def channels_last_batch(batchdata: dict, device: torch.device, non_blocking: bool = False, **kwargs: Any):
    """``prepare_batch`` keeping the images channels_last (a no-op copy for on-device channels_last data)."""
    image = batchdata["image"].to(device, non_blocking=non_blocking, **kwargs)
    label = batchdata["label"].to(device, non_blocking=non_blocking, **kwargs)
    return image.contiguous(memory_format=torch.channels_last), label


def device_batches(
    count: int, batch: int, size: int, device: torch.device, channels_last: bool
) -> list[dict]:
    """``count`` random batches created on ``device`` (cycled during training)."""
    generator = torch.Generator(device=device).manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for _ in range(count):
        image = torch.rand(batch, 3, size, size, device=device, generator=generator)
        label = torch.randint(0, NUM_CLASSES, (batch,), device=device, generator=generator)
        out.append({"image": image.contiguous(memory_format=fmt), "label": label})
    return out


class ThroughputMeter:
    """Ignite handler: skips ``warmup`` iterations, then times until ``seconds`` or ``max_steps`` pass.

    The device is synchronised only at the start and at every ``check_every``-th timed step, so the
    measurement adds no host syncs to the other steps.
    """

    def __init__(self, warmup: int, seconds: float, max_steps: int, check_every: int, sync) -> None:
        self.warmup, self.seconds, self.max_steps = warmup, seconds, max_steps
        self.check_every = check_every
        self.sync = sync
        self.created = time.perf_counter()
        self.start: float | None = None
        self.elapsed = 0.0
        self.steps = 0

    def __call__(self, engine: Engine) -> None:
        """Called on ``ITERATION_COMPLETED``."""
        if self.start is None:
            if engine.state.iteration >= self.warmup:
                self.sync()
                self.start = time.perf_counter()
            return
        self.steps += 1
        if self.steps % self.check_every and self.steps < self.max_steps:
            return
        self.sync()
        self.elapsed = time.perf_counter() - self.start
        if self.elapsed >= self.seconds or self.steps >= self.max_steps:
            engine.terminate()

    @property
    def warmup_seconds(self) -> float:
        """Seconds from the meter's creation to the end of the warm-up (includes compilation)."""
        return (self.start or time.perf_counter()) - self.created


def measure(method: str, network: torch.nn.Module, batches: list[dict], args, device, compile_: bool) -> dict:
    """Train ``method`` until its time window closes; return images/s, passes/step and peak memory."""
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    trainer_kwargs: dict[str, Any] = {
        "epoch_length": 10**9,  # the meter terminates the run
        "amp": args.amp,
        "amp_kwargs": {"dtype": torch.bfloat16},
        "compile": compile_,
        "optim_set_to_none": True,
    }
    if args.channels_last:
        trainer_kwargs["prepare_batch"] = channels_last_batch
    torch.manual_seed(0)
    # MONAI's ViT returns (logits, hidden_states): the loss takes the logits (a tensor output is unchanged)
    iteration_kwargs = {"check_finite": args.check_finite, "output_index": 0}
    trainer = build_trainer(
        MODES[method], network, itertools.cycle(batches), device, iteration_kwargs, **trainer_kwargs
    )
    meter = ThroughputMeter(args.warmup_steps, args.seconds, args.max_steps, args.check_every, sync)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, meter)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    counter = ForwardCounter(network)
    try:
        trainer.run()
    finally:  # the network is shared by all methods: never leave a hook behind
        counter.remove()
    if meter.steps == 0:
        raise RuntimeError(f"{method}: no timed step (warm-up {args.warmup_steps} steps never ended)")
    total_steps = trainer.state.iteration
    return {
        "method": method,
        "images_per_s": meter.steps * args.batch / meter.elapsed,
        "timed_steps": meter.steps,
        "timed_s": meter.elapsed,
        "warmup_s": meter.warmup_seconds,
        "passes_per_step": counter.count / total_steps,
        "expected_passes_per_step": MODES[method].expected_passes(
            total_steps, getattr(trainer.optimizer, "passes_per_step", 1)
        ),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "compile": compile_,
    }


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and device name for the report."""
    info = {"torch": torch.__version__, "monai": monai.__version__, "device": str(device)}
    if device.type == "cuda":
        info.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu=torch.cuda.get_device_name(device),
        )
    else:
        info["threads"] = torch.get_num_threads()
    return info


def default_output() -> str:
    """``$OUT/gpu_throughput.json`` when ``OUT`` is set (device machine), else ``./gpu_throughput.json``."""
    out = os.environ.get("OUT")
    return str(Path(out) / "gpu_throughput.json") if out else "gpu_throughput.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; ``--smoke`` shrinks every size for a CPU check of the code path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="resnet50,vit", help="comma-separated: resnet50, vit")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from {list(MODES)}")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup-steps", type=int, default=8, help="untimed steps per method (compile here)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window per method")
    parser.add_argument("--max-steps", type=int, default=10**6, help="timed steps per method at most")
    parser.add_argument("--check-every", type=int, default=10, help="timed steps between two clock reads")
    parser.add_argument("--budget-s", type=float, default=240.0, help="skip methods that would not fit")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 instead of bf16 autocast")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument(
        "--no-check-finite",
        dest="check_finite",
        action="store_false",
        help="SharpnessAwareIteration(check_finite=False): drop its one host sync per step",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny networks and sizes, 2 timed steps")
    parser.add_argument("--output", default=default_output())
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.size, args.warmup_steps = 4, 32, 1
        args.seconds, args.max_steps, args.check_every = 60.0, 2, 1
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in MODES]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {list(MODES)}")
    return args


def try_measure(method: str, network, initial: dict, batches, args, device, compile_: bool) -> dict:
    """:func:`measure` from the initial weights; an exception becomes an ``error`` entry (unattended runs)."""
    network.load_state_dict(initial)
    try:
        return measure(method, network, batches, args, device, compile_)
    except Exception as error:  # record and go on: one broken method must not lose the others
        return {"error": f"{type(error).__name__}: {error}"[:500]}


def run_model(name: str, args, device, report: dict, deadline: float) -> None:
    """All methods on one network; rows are appended to ``report`` and written after every method."""
    torch.manual_seed(0)
    network = build_network(name, args.size, args.smoke).to(device)
    if args.channels_last:
        network = network.to(memory_format=torch.channels_last)
    initial = {k: v.clone() for k, v in network.state_dict().items()}
    batches = device_batches(4, args.batch, args.size, device, args.channels_last)
    compile_, compiled = args.compile, False
    adam = None
    for method in args.methods:
        row: dict[str, Any] = {"model": name, "method": method}
        needed = args.seconds + 5 + (COMPILE_ALLOWANCE_S if compile_ and not compiled else 0)
        if time.monotonic() + needed > deadline:
            row["skipped"] = "time budget"
        else:
            result = try_measure(method, network, initial, batches, args, device, compile_)
            if "error" in result and compile_:  # compilation is the usual suspect: stay eager for this model
                compile_ = False
                result = {
                    **try_measure(method, network, initial, batches, args, device, False),
                    "compile_error": result["error"],
                }
            compiled = True
            row.update(result)
        if method == "adam" and "images_per_s" in row:
            adam = row["images_per_s"]
        if adam and "images_per_s" in row:
            row["ratio_to_adam"] = row["images_per_s"] / adam
        report["results"].append(row)
        print(format_row(row), flush=True)
        write_json(args.output, report, nan_as_null=False)


def format_row(row: dict[str, Any]) -> str:
    """One line of the printed table."""
    head = f"{row['model']:9s} {row['method']:14s}"
    if "images_per_s" not in row:
        return f"{head} {row.get('skipped') or row.get('error')}"
    mem = f"{row['peak_memory_gib']:6.1f}" if row["peak_memory_gib"] is not None else "     -"
    ratio = row.get("ratio_to_adam", float("nan"))
    return (
        f"{head} {row['images_per_s']:9.1f} {ratio:8.2f} {row['passes_per_step']:7.2f} "
        f"{row['expected_passes_per_step']:7.2f} {mem} {row['warmup_s']:8.1f} {row['timed_steps']:6d}"
        + ("" if row["compile"] else "  (eager)")
    )


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the report."""
    started = time.monotonic()
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    settings = {k: v for k, v in vars(args).items() if k != "output"}
    report = {"environment": environment(device), "settings": settings, "results": []}
    print(" ".join(f"{k}={v}" for k, v in report["environment"].items()))
    print(
        f"batch {args.batch}, {args.size}x{args.size}, bf16 autocast {args.amp}, channels_last "
        f"{args.channels_last}, compile {args.compile}, warm-up {args.warmup_steps} steps, "
        f"window {args.seconds} s/method"
    )
    print(
        f"{'model':9s} {'method':14s} {'images/s':>9s} {'of adam':>8s} {'passes':>7s} {'theory':>7s} "
        f"{'GiB':>6s} {'warmup s':>8s} {'steps':>6s}"
    )
    deadline = started + args.budget_s
    for name in args.models:
        run_model(name, args, device, report, deadline)
    report["total_s"] = time.monotonic() - started
    write_json(args.output, report, nan_as_null=False)
    print(f"total {report['total_s']:.1f} s; wrote {args.output}")
    return report


if __name__ == "__main__":
    main()
