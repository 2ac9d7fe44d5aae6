"""Time one sharpness-aware step against the same number of base-optimizer steps on a MONAI DenseNet121.

The model, data and passes are identical, so the ratio exposes the wrapper's own cost (global norm, weight
backup, perturbation, restore, combination). A SAM step runs 2 forward/backward passes and 1 base step; the
reference runs 2 passes and 2 base steps, so a ratio of 1.0 means the wrapper costs no more than one base
step.

Repetitions are interleaved (method step, reference steps, method step, ...) and medians are reported, so
slow drifts of a shared machine hit both sides alike. A second, low-noise measurement times the optimizer
calls alone (perturb + unperturb + base_step on fixed gradients) against one base step; "implied" combines
it with the measured pass time into a lower-noise estimate of the ratio.

Usage::

    python benchmarks/bench_optimizer_step.py                  # SAM only
    python benchmarks/bench_optimizer_step.py --methods all    # every method (slow)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from monai.networks.nets import DenseNet121

from monai_sam.optimizers import create_optimizer

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
}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)


def _closure(model, opt, x, y):
    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def time_steps(method: str, base: str, reps: int, batch: int, size: int) -> dict[str, float]:
    """Median seconds of one method step and of ``num_passes`` plain steps, interleaved."""
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 2, (batch,))
    model, ref_model = _model(), _model()
    opt = create_optimizer(method, model.parameters(), base=base, lr=1e-3, **METHOD_KWARGS[method])
    ref = create_optimizer(base, ref_model.parameters(), lr=1e-3)
    passes = opt.num_passes
    closure = _closure(model, opt, x, y)

    def reference_steps():
        for _ in range(passes):
            ref.zero_grad()
            torch.nn.functional.cross_entropy(ref_model(x), y).backward()
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


def time_optimizer_only(method: str, base: str, reps: int) -> dict[str, float]:
    """Median seconds of the optimizer calls of one step on fixed gradients vs one base step."""
    model = _model()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) for p in params]
    opt = create_optimizer(method, params, base=base, lr=1e-3, **METHOD_KWARGS[method])
    loss = torch.tensor(1.0)

    def set_grads():
        for p, g in zip(params, grads):
            p.grad = g.clone()

    def wrapper_step() -> float:
        """Seconds spent in the optimizer calls only (gradient set-up excluded)."""
        spent = 0.0
        set_grads()
        for _ in range(opt.num_passes - 1):
            t0 = time.perf_counter()
            opt.perturb(loss)
            spent += time.perf_counter() - t0
            set_grads()
        t0 = time.perf_counter()
        opt.unperturb(loss)
        opt.base_step()
        return spent + time.perf_counter() - t0

    def base_step() -> float:
        set_grads()
        t0 = time.perf_counter()
        opt.base_optimizer.step()
        return time.perf_counter() - t0

    wrapper_step()
    base_step()
    w_t, b_t = [], []
    for _ in range(reps):
        w_t.append(wrapper_step())
        b_t.append(base_step())
    return {"wrapper_ms": 1e3 * statistics.median(w_t), "base_step_ms": 1e3 * statistics.median(b_t)}


def implied_ratio(full: dict[str, float], only: dict[str, float]) -> float:
    """Low-noise ratio: pass time from the reference, optimizer cost from the optimizer-only timing.

    method step = n * pass + wrapper calls; reference = n * (pass + base step).
    """
    n, base = full["passes"], only["base_step_ms"] / 1e3
    per_pass = full["reference_s"] / n - base
    return (n * per_pass + only["wrapper_ms"] / 1e3) / (n * (per_pass + base))


def main() -> None:
    """Parse arguments, run the timings, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="sam", help="comma-separated names or 'all'")
    parser.add_argument("--base", default="sgd", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = list(METHOD_KWARGS) if args.methods == "all" else args.methods.split(",")
    print(
        f"torch {torch.__version__}, threads {args.threads}, DenseNet121 2-D, batch {args.batch}, "
        f"{args.size}x{args.size}, base {args.base}, reps {args.reps}, load avg {os.getloadavg()[0]:.2f}"
    )
    header = ("method", "passes", "step s", "ref s", "ratio", "opt-only ms", "base ms", "implied")
    print("{:9s} {:>6s} {:>8s} {:>8s} {:>6s}  {:>11s} {:>8s} {:>8s}".format(*header))
    for method in methods:
        full = time_steps(method, args.base, args.reps, args.batch, args.size)
        only = time_optimizer_only(method, args.base, max(args.reps, 5))
        print(
            f"{method:9s} {full['passes']:6d} {full['method_s']:8.3f} {full['reference_s']:8.3f} "
            f"{full['ratio']:6.3f}  {only['wrapper_ms']:11.1f} {only['base_step_ms']:8.1f} "
            f"{implied_ratio(full, only):8.3f}",
            flush=True,
        )
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
