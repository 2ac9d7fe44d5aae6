"""Time one sharpness-aware step against the same number of base-optimizer steps, and against a naive loop.

Models (``--models``): MONAI ``DenseNet121`` 2-D (default), MONAI ``resnet50`` 2-D and monai-sam's
``vit_small`` (a 6-layer MONAI ViT), all with one input channel and two classes.

The model, data and passes are identical, so the full-step ratio exposes the wrapper's own cost (global norm,
weight backup, perturbation, restore, combination). A SAM step runs 2 forward/backward passes and 1 base
step; the reference runs 2 passes and 2 base steps, so a ratio of 1.0 means the wrapper costs no more than
one base step. Repetitions are interleaved (method step, reference steps, method step, ...) and medians are
reported, so slow drifts of a shared machine hit both sides alike.

A second, low-noise measurement times the optimizer calls alone (perturb + unperturb + base_step on fixed
gradients) against one base step; "implied" combines it with the measured pass time into a lower-noise
estimate of the ratio. On the same fixed gradients, interleaved with it, the same calls of a naive
implementation of the method (a Python loop over the parameters with one small kernel per tensor, as in the
widely copied per-parameter SAM code) are timed: "naive ms" and "speed-up" (naive / ours) show what the
``torch._foreach_*`` path buys. Naive versions exist for SAM and ASAM; other methods print "-". The naive
code restores by subtraction (not bit-exact) and does not guard non-finite gradients, so it makes fewer
memory sweeps than monai-sam; "loop ms" times SAM with exactly our guarantees and sweeps written as a
per-parameter loop (:class:`ExactLoopSAM`), which isolates the effect of the foreach kernels.

Usage::

    python benchmarks/bench_optimizer_step.py                              # SAM on DenseNet121
    python benchmarks/bench_optimizer_step.py --methods sam,asam --models densenet121,resnet50,vit_small
    python benchmarks/bench_optimizer_step.py --methods all --reps 3 --size 64 --threads 1   # quick check
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from monai.networks.nets import DenseNet121, resnet50
from torch import Tensor, nn
from torch.optim import Optimizer

from monai_sam.networks import build_network
from monai_sam.optimizers import create_optimizer
from monai_sam.optimizers.factory import METHODS, PLAIN_OPTIMIZERS

METHOD_KWARGS = {
    "sam": {},
    "asam": {},
    "gsam": {},
    "wsam": {},
    "crsam": {},
    "ssam": {},
    "frobsam": {},
    "detsam": {},
    "looksam": {"k": 1},
    "msam": {},
    "gcsam": {},
    "fsam": {},
    "bsam": {"num_data": 1000},
}


def base_kwargs(method: str, base: str) -> dict[str, Any]:
    """Base-optimizer options a method needs, given to its reference too (MSAM over SGD: a momentum)."""
    return {"momentum": 0.9} if method == "msam" and base == "sgd" else {}


def build_method(method: str, params: Iterable[Tensor], base: str) -> Optimizer:
    """The method over ``base``; bSAM has its own update and takes no base (its reference is that update)."""
    if getattr(METHODS[method], "own_update", False):
        return create_optimizer(method, params, lr=1e-3, **METHOD_KWARGS[method])
    return create_optimizer(
        method, params, base=base, lr=1e-3, **METHOD_KWARGS[method], **base_kwargs(method, base)
    )


def build_reference(opt: Optimizer, params: Iterable[Tensor], base: str) -> Optimizer:
    """The plain optimizer a step is compared with: ``base``, or a method's own update (bSAM)."""
    if getattr(opt, "own_update", False):
        return type(opt.base_optimizer)(params, lr=1e-3)
    return create_optimizer(base, params, lr=1e-3, **base_kwargs(type(opt).__name__.lower(), base))


MODELS: dict[str, Callable[[int], nn.Module]] = {
    "densenet121": lambda size: DenseNet121(spatial_dims=2, in_channels=1, out_channels=2),
    "resnet50": lambda size: resnet50(spatial_dims=2, n_input_channels=1, num_classes=2),
    "vit_small": lambda size: build_network("vit_small", num_classes=2, in_channels=1, image_size=size),
}


def build_model(name: str, size: int) -> nn.Module:
    """A freshly initialised model (seed 0, so two calls give identical weights)."""
    if name not in MODELS:
        raise ValueError(f"--models: unknown model {name!r}; choose from {sorted(MODELS)}.")
    torch.manual_seed(0)
    return MODELS[name](size)


def _logits(output: Any) -> Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


class NaiveLoopSAM:
    """SAM written the naive way: one small kernel per parameter, perturbation kept, restored by subtraction.

    Per parameter: the gradient norm (stacked for the global norm), ``e_w = g * rho / norm``, ``w += e_w``,
    ``e_w`` kept; then ``w -= e_w`` per parameter and the base step. Only for timing, not for training.

    Args:
        params: the parameters (gradients set by the caller).
        base_optimizer: the wrapped optimizer over the same parameters.
        rho: neighbourhood radius.
    """

    def __init__(self, params: Iterable[Tensor], base_optimizer: Optimizer, rho: float = 0.05) -> None:
        self.params = list(params)
        self.base_optimizer = base_optimizer
        self.rho = rho
        self.kept: dict[Tensor, Tensor] = {}

    def _direction(self, p: Tensor) -> Tensor:
        """The ascent direction before scaling (SAM: the gradient)."""
        return p.grad

    def _scaled(self, p: Tensor, direction: Tensor, scale: Tensor) -> Tensor:
        return direction * scale

    @torch.no_grad()
    def first_step(self) -> None:
        """Perturb: ``w += e_w`` per parameter, ``e_w`` kept."""
        directions = {p: self._direction(p) for p in self.params if p.grad is not None}
        norm = torch.stack([d.norm(2) for d in directions.values()]).norm(2)
        scale = self.rho / (norm + 1e-12)
        for p, d in directions.items():
            e_w = self._scaled(p, d, scale)
            p.add_(e_w)
            self.kept[p] = e_w

    @torch.no_grad()
    def second_step(self) -> None:
        """Restore ``w -= e_w`` per parameter, then the base step."""
        for p, e_w in self.kept.items():
            p.sub_(e_w)
        self.kept = {}
        self.base_optimizer.step()


class NaiveLoopASAM(NaiveLoopSAM):
    """ASAM written the naive way: ``T = |w| + eta`` per weight (ndim > 1), ``e_w = T^2 g rho / ||T g||``.

    Args:
        params: the parameters (gradients set by the caller).
        base_optimizer: the wrapped optimizer over the same parameters.
        rho: radius in the adaptive metric.
        eta: offset of ``T``.
    """

    def __init__(
        self, params: Iterable[Tensor], base_optimizer: Optimizer, rho: float = 0.5, eta: float = 0.01
    ):
        super().__init__(params, base_optimizer, rho)
        self.eta = eta

    def _direction(self, p: Tensor) -> Tensor:
        return (p.abs() + self.eta) * p.grad if p.ndim > 1 else p.grad

    def _scaled(self, p: Tensor, direction: Tensor, scale: Tensor) -> Tensor:
        return (p.abs() + self.eta) * direction * scale if p.ndim > 1 else direction * scale


class ExactLoopSAM(NaiveLoopSAM):
    """SAM with OUR guarantees, written as a Python loop: isolates what the ``_foreach_*`` kernels buy.

    Per parameter: fp32 norm (stacked for the global norm), copy into a kept backup buffer, ``g *= s``,
    non-finite entries zeroed, ``w += g``; then restore by copy and the base step. Same memory sweeps as
    monai-sam's SAM, one kernel per tensor. Only for timing.

    Args:
        params: the parameters (gradients set by the caller).
        base_optimizer: the wrapped optimizer over the same parameters.
        rho: neighbourhood radius.
    """

    def __init__(self, params: Iterable[Tensor], base_optimizer: Optimizer, rho: float = 0.05) -> None:
        super().__init__(params, base_optimizer, rho)
        self.backup = {p: torch.empty_like(p) for p in self.params}

    @torch.no_grad()
    def first_step(self) -> None:
        """Back up, scale the gradient into the perturbation, zero non-finite entries, perturb."""
        live = [p for p in self.params if p.grad is not None]
        norm = torch.stack([p.grad.norm(2, dtype=torch.float32) for p in live]).norm(2)
        finite = torch.isfinite(norm)
        scale = torch.where(finite, self.rho / (norm + 1e-12), torch.zeros_like(norm))
        for p in live:
            self.backup[p].copy_(p)
            e = p.grad.mul_(scale)
            torch.nan_to_num_(e, nan=0.0, posinf=0.0, neginf=0.0)
            p.add_(e)

    @torch.no_grad()
    def second_step(self) -> None:
        """Restore by copy, then the base step."""
        for p in self.params:
            p.copy_(self.backup[p])
        self.base_optimizer.step()


NAIVE: dict[str, type[NaiveLoopSAM]] = {"sam": NaiveLoopSAM, "asam": NaiveLoopASAM}
EXACT_LOOP: dict[str, type[NaiveLoopSAM]] = {"sam": ExactLoopSAM}


def time_steps(model_name: str, method: str, base: str, reps: int, batch: int, size: int) -> dict[str, float]:
    """Median seconds of one method step and of ``num_passes`` plain steps, interleaved."""
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 2, (batch,))
    model, ref_model = build_model(model_name, size), build_model(model_name, size)
    opt = build_method(method, model.parameters(), base)
    ref = build_reference(opt, ref_model.parameters(), base)
    passes = opt.num_passes

    def closure():
        loss = nn.functional.cross_entropy(_logits(model(x)), y)
        loss.backward()
        return loss

    def reference_steps():
        for _ in range(passes):
            ref.zero_grad()
            nn.functional.cross_entropy(_logits(ref_model(x)), y).backward()
            ref.step()

    opt.step(closure)  # warm-up: allocations, state init
    reference_steps()
    method_t, ref_t = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        opt.step(closure)
        method_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        reference_steps()
        ref_t.append(time.perf_counter() - t0)
    m, r = statistics.median(method_t), statistics.median(ref_t)
    return {"passes": passes, "method_s": m, "reference_s": r, "ratio": m / r}


def time_optimizer_only(model_name: str, method: str, base: str, reps: int, size: int) -> dict[str, float]:
    """Median ms of one step's optimizer calls on fixed gradients: ours, naive (or NaN), one base step."""
    model, naive_model = build_model(model_name, size), build_model(model_name, size)
    params = [p for p in model.parameters() if p.requires_grad]
    naive_params = [p for p in naive_model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) for p in params]
    opt = build_method(method, params, base)
    naive = exact = None
    if method in NAIVE:
        naive = NAIVE[method](naive_params, PLAIN_OPTIMIZERS[base](naive_params, lr=1e-3))
    if method in EXACT_LOOP:
        exact = EXACT_LOOP[method](naive_params, PLAIN_OPTIMIZERS[base](naive_params, lr=1e-3))
    loss = torch.tensor(1.0)

    def set_grads(targets: list[Tensor]) -> None:
        for p, g in zip(targets, grads):
            p.grad = g.clone()

    def ours() -> float:
        """Seconds spent in the optimizer calls only (gradient set-up excluded)."""
        spent = 0.0
        set_grads(params)
        for _ in range(opt.num_passes - 1):
            t0 = time.perf_counter()
            opt.perturb(loss)
            spent += time.perf_counter() - t0
            set_grads(params)
        t0 = time.perf_counter()
        opt.unperturb(loss)
        opt.base_step()
        return spent + time.perf_counter() - t0

    def loop_timer(loop: Any) -> Callable[[], float]:
        def loop_step() -> float:
            set_grads(naive_params)
            t0 = time.perf_counter()
            loop.first_step()
            spent = time.perf_counter() - t0
            set_grads(naive_params)
            t0 = time.perf_counter()
            loop.second_step()
            return spent + time.perf_counter() - t0

        return loop_step

    def base_step() -> float:
        set_grads(params)
        t0 = time.perf_counter()
        opt.base_optimizer.step()
        return time.perf_counter() - t0

    timers = {"ours": ours, "base": base_step}
    timers.update({name: loop_timer(loop) for name, loop in (("naive", naive), ("exact", exact)) if loop})
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for rep in range(reps + 1):  # the first round is a warm-up
        for name, timer in timers.items():
            spent = timer()
            if rep:
                samples[name].append(spent)
    ms = {name: 1e3 * statistics.median(values) for name, values in samples.items()}
    nan = float("nan")
    return {
        "wrapper_ms": ms["ours"],
        "base_step_ms": ms["base"],
        "naive_ms": ms.get("naive", nan),
        "exact_loop_ms": ms.get("exact", nan),
    }


def implied_ratio(full: dict[str, float], only: dict[str, float]) -> float:
    """Low-noise ratio: pass time from the reference, optimizer cost from the optimizer-only timing.

    method step = n * pass + wrapper calls; reference = n * (pass + base step).
    """
    n, base = full["passes"], only["base_step_ms"] / 1e3
    per_pass = full["reference_s"] / n - base
    return (n * per_pass + only["wrapper_ms"] / 1e3) / (n * (per_pass + base))


def _loop_columns(loop_ms: float, ours_ms: float) -> tuple[str, str]:
    """(loop ms, loop / ours) or dashes when the method has no loop version."""
    if loop_ms != loop_ms:
        return "-", "-"
    return f"{loop_ms:.1f}", f"{loop_ms / ours_ms:.2f}x"


def _row(model: str, method: str, full: dict[str, float], only: dict[str, float]) -> str:
    naive = _loop_columns(only["naive_ms"], only["wrapper_ms"])
    exact = _loop_columns(only["exact_loop_ms"], only["wrapper_ms"])
    return (
        f"{model:12s} {method:8s} {full['passes']:6d} {full['method_s']:8.3f} {full['reference_s']:8.3f} "
        f"{full['ratio']:6.3f}  {only['wrapper_ms']:11.1f} {only['base_step_ms']:8.1f} "
        f"{implied_ratio(full, only):8.3f}  {naive[0]:>9s} {naive[1]:>8s}  {exact[0]:>9s} {exact[1]:>8s}"
    )


def main() -> None:
    """Parse arguments, run the timings, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="sam", help="comma-separated names or 'all'")
    parser.add_argument("--models", default="densenet121", help=f"comma-separated, from {sorted(MODELS)}")
    parser.add_argument("--base", default="sgd", choices=sorted(PLAIN_OPTIMIZERS))
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image side (vit_small: a multiple of 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = list(METHOD_KWARGS) if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(methods) - set(METHOD_KWARGS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {list(METHOD_KWARGS)} or 'all'.")
    models = args.models.split(",")
    sizes = {name: sum(p.numel() for p in build_model(name, args.size).parameters()) for name in models}
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.size}x{args.size}x1, base {args.base}, reps {args.reps}, load avg {os.getloadavg()[0]:.2f}; "
        + ", ".join(f"{name} {count / 1e6:.2f} M params" for name, count in sizes.items())
    )
    header = ("model", "method", "passes", "step s", "ref s", "ratio", "opt-only ms", "base ms", "implied")
    print("{:12s} {:8s} {:>6s} {:>8s} {:>8s} {:>6s}  {:>11s} {:>8s} {:>8s}".format(*header), end="")
    print("  {:>9s} {:>8s}  {:>9s} {:>8s}".format("naive ms", "speed-up", "loop ms", "speed-up"))
    for model in models:
        for method in methods:
            full = time_steps(model, method, args.base, args.reps, args.batch, args.size)
            only = time_optimizer_only(model, method, args.base, max(args.reps, 5), args.size)
            print(_row(model, method, full, only), flush=True)
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
