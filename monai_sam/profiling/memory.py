"""Peak and persistent memory of one optimizer step, in bytes and in parameter-sized buffers.

A sharpness-aware step keeps buffers the base optimizer does not (a weight backup, a stored gradient, ...).
:func:`measure_memory_overhead` runs the SAME model, batch and number of warm-up steps twice, once with the
method and once with the plain base optimizer, and reports the difference of the peaks during one measured
step and of the memory still held after it, divided by the parameter bytes: SAM's weight backup shows as
``1.0`` buffer.

On CPU the whole run (model and optimizer creation, warm-up, measured step) is recorded by
``torch.profiler`` with ``profile_memory=True``. Its raw allocation records (``+nbytes`` per allocation,
``-nbytes`` per free, each with its own timestamp) summed in time order give the live bytes at every moment.
Everything is created inside the profile because the profiler drops the frees of blocks allocated before it
started; so buffers the optimizer keeps between steps (a persistent backup, LookSAM's ``gv``) are counted.
The per-op ``self_cpu_memory_usage`` of the profiler's event table is NOT used: it books a free inside a
``record_function`` range at the range's start, which hides the peak.

On CUDA (inputs on a CUDA device) ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` is
used instead; that path has not been run on a GPU yet.

Example::

    from monai.networks.nets import DenseNet121
    from monai_sam.optimizers import create_optimizer
    from monai_sam.profiling import StepSetup, measure_memory_overhead

    setup = StepSetup(
        lambda: DenseNet121(spatial_dims=2, in_channels=1, out_channels=2),
        inputs=torch.randn(2, 1, 64, 64),
        targets=torch.tensor([0, 1]),
    )
    result = measure_memory_overhead(
        setup,
        lambda params: create_optimizer("sam", params, base="adam", lr=1e-3),
        lambda params: create_optimizer("adam", params, lr=1e-3),
    )
    print(result.extra_peak_buffers, result.persistent_extra_buffers)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import DeviceType
from torch.optim import Optimizer
from torch.profiler import ProfilerActivity, profile, record_function

from monai_sam.optimizers.base import check_step_option

__all__ = [
    "CalibrationSGD",
    "MemoryOverhead",
    "StepMemory",
    "StepSetup",
    "measure_memory_overhead",
    "profile_step_memory",
]

_MEASURED = "monai_sam.profiling.measured_step"
_MEMORY_EVENT = "[memory]"

ModelBuilder = Callable[[], nn.Module]
OptimizerBuilder = Callable[[list[Tensor]], Optimizer]
LossFunction = Callable[[Tensor, Tensor], Tensor]
Prepared = tuple[Optimizer, Callable[[], Tensor], int]  # optimizer, closure, parameter bytes


@dataclass(frozen=True)
class StepSetup:
    """The model, batch and warm-up of a memory measurement: what the compared runs share.

    Args:
        build_model: returns a fresh model (moved to ``inputs.device``); called once per run after
            ``torch.manual_seed(seed)``, so every run gets identical weights. Its output, or the first
            element of a tuple output (MONAI's ViT), is fed to ``loss_fn``.
        inputs: one batch of inputs; its device selects the CPU profiler or the CUDA allocator statistics.
        targets: the batch's targets.
        loss_fn: ``loss_fn(logits, targets)``.
        warmup_steps: steps before the measured one (>= 0); they create optimizer state, and with
            ``interval``/``k`` options they choose which kind of step is measured (full or off-step).
        seed: seed of the model initialisation.
    """

    build_model: ModelBuilder
    inputs: Tensor
    targets: Tensor
    loss_fn: LossFunction = nn.functional.cross_entropy
    warmup_steps: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_step_option("warmup_steps", self.warmup_steps, 0)
        if self.inputs.device.type not in ("cpu", "cuda"):
            raise ValueError(f"inputs on {self.inputs.device}: only CPU and CUDA memory can be measured.")


@dataclass(frozen=True)
class StepMemory:
    """Memory of one measured optimizer step, counted from the start of the run (before the model existed).

    Attributes:
        peak_bytes: most bytes live at any moment during the measured step.
        after_bytes: bytes live at the end of the measured step (model, optimizer state, kept buffers,
            the last gradients).
        param_bytes: bytes of the trainable parameters.
    """

    peak_bytes: int
    after_bytes: int
    param_bytes: int


@dataclass(frozen=True)
class MemoryOverhead:
    """What one step of a method costs in memory over one step of its base optimizer.

    Args:
        method: the method's measured step.
        base: the base optimizer's measured step on an identical model and batch.

    Attributes:
        param_bytes: bytes of the trainable parameters (one "buffer").
        extra_peak_bytes: peak bytes of the method's step minus peak bytes of the base step.
        extra_peak_buffers: ``extra_peak_bytes / param_bytes``.
        persistent_extra_bytes: bytes the method still holds after its step beyond what the base optimizer
            holds after its own (buffers kept between steps).
        persistent_extra_buffers: ``persistent_extra_bytes / param_bytes``.
    """

    method: StepMemory
    base: StepMemory
    param_bytes: int = field(init=False)
    extra_peak_bytes: int = field(init=False)
    extra_peak_buffers: float = field(init=False)
    persistent_extra_bytes: int = field(init=False)
    persistent_extra_buffers: float = field(init=False)

    def __post_init__(self) -> None:
        if self.method.param_bytes != self.base.param_bytes:
            raise ValueError(
                f"the method's model has {self.method.param_bytes} parameter bytes, the base's "
                f"{self.base.param_bytes}: compare identical models."
            )
        extra = {
            "extra_peak": self.method.peak_bytes - self.base.peak_bytes,
            "persistent_extra": self.method.after_bytes - self.base.after_bytes,
        }
        object.__setattr__(self, "param_bytes", self.method.param_bytes)
        for name, value in extra.items():  # frozen: set the derived fields once, here
            object.__setattr__(self, f"{name}_bytes", value)
            object.__setattr__(self, f"{name}_buffers", value / self.param_bytes)


class CalibrationSGD(torch.optim.SGD):
    """SGD that deliberately holds parameter clones, to check a memory measurement against a known answer.

    Every step clones all parameters ``clones`` times before the first pass and frees the clones after the
    base step, so its peak is exactly ``clones`` buffers above plain SGD. With ``persistent=True`` the clones
    are taken once (first step) and kept: ``clones`` buffers of persistent extra, and the same peak extra.

    Args:
        params: parameters or param-group dicts.
        clones: number of parameter-sized copies held (>= 0).
        persistent: keep the copies between steps instead of freeing them after each step.
        sgd_kwargs: keyword arguments of :class:`torch.optim.SGD` (``lr``, ...).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        clones: int = 1,
        persistent: bool = False,
        **sgd_kwargs: Any,
    ) -> None:
        check_step_option("clones", clones, 0)
        super().__init__(params, **sgd_kwargs)
        self.clones = clones
        self.persistent = persistent
        self._kept: list[list[Tensor]] = []

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Clone the parameters, run ``closure`` and the SGD step, then free the clones unless persistent."""
        with torch.no_grad():
            held = self._kept or [torch._foreach_clone(self._params()) for _ in range(self.clones)]
        loss = super().step(closure)
        self._kept = held if self.persistent else []
        return loss


def _logits(output: Any) -> Tensor:
    """The logits of a network output (MONAI's ViT returns ``(logits, hidden_states)``)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _prepare(setup: StepSetup, build_optimizer: OptimizerBuilder) -> Prepared:
    """Build the model and optimizer, take the warm-up steps; return (optimizer, closure, parameter bytes)."""
    torch.manual_seed(setup.seed)
    inputs, targets = setup.inputs, setup.targets
    model = setup.build_model().to(inputs.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("build_model returned a model without trainable parameters.")
    optimizer = build_optimizer(params)

    def closure() -> Tensor:
        model.zero_grad(set_to_none=True)
        loss = setup.loss_fn(_logits(model(inputs)), targets)
        loss.backward()
        return loss

    for _ in range(setup.warmup_steps):
        optimizer.step(closure)
    return optimizer, closure, sum(p.numel() * p.element_size() for p in params)


def _live_bytes_in_range(events: Iterable[Any], marker: str) -> tuple[int, int]:
    """(peak, end) of the live CPU bytes during the ``marker`` range, from raw profiler memory records."""
    records, ranges = [], []
    for event in events:
        name = event.name()
        if name == _MEMORY_EVENT and event.device_type() == DeviceType.CPU:
            records.append((event.start_ns(), event.nbytes()))
        elif name == marker:
            ranges.append((event.start_ns(), event.end_ns()))
    if len(ranges) != 1:
        raise RuntimeError(f"expected one profiler range named {marker!r}, found {len(ranges)}.")
    start, end = ranges[0]
    records.sort(key=lambda r: r[0])
    live = list(itertools.accumulate(n for _, n in records))
    before = [v for (t, _), v in zip(records, live) if t < start]
    inside = [v for (t, _), v in zip(records, live) if start <= t <= end]
    at_start = before[-1] if before else 0
    return max([at_start, *inside]), (inside[-1] if inside else at_start)


def _cpu_step_memory(prepare: Callable[[], Prepared]) -> StepMemory:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer, closure, param_bytes = prepare()
        with record_function(_MEASURED):
            optimizer.step(closure)
        del optimizer, closure
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        raise RuntimeError(
            f"torch {torch.__version__}: the profiler exposes no raw memory records (kineto_results)."
        )
    peak, after = _live_bytes_in_range(results.events(), _MEASURED)
    return StepMemory(peak_bytes=peak, after_bytes=after, param_bytes=param_bytes)


def _cuda_step_memory(prepare: Callable[[], Prepared], device: torch.device) -> StepMemory:
    # Not yet run on a GPU. Counted from the allocated bytes before the model existed, like the CPU path.
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    optimizer, closure, param_bytes = prepare()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    optimizer.step(closure)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - start
    after = torch.cuda.memory_allocated(device) - start
    return StepMemory(peak_bytes=peak, after_bytes=after, param_bytes=param_bytes)


def profile_step_memory(setup: StepSetup, build_optimizer: OptimizerBuilder) -> StepMemory:
    """Measure the memory of one ``optimizer.step(closure)`` after ``setup.warmup_steps`` steps.

    Args:
        setup: model, batch, loss and warm-up.
        build_optimizer: ``build_optimizer(trainable_params)`` returns an optimizer whose ``step`` takes a
            closure (every torch optimizer and every monai-sam optimizer does).

    Returns:
        the :class:`StepMemory` of the measured step.
    """

    def prepare() -> Prepared:
        return _prepare(setup, build_optimizer)

    if setup.inputs.device.type == "cuda":
        return _cuda_step_memory(prepare, setup.inputs.device)
    return _cpu_step_memory(prepare)


def measure_memory_overhead(
    setup: StepSetup, build_optimizer: OptimizerBuilder, build_base_optimizer: OptimizerBuilder
) -> MemoryOverhead:
    """Memory of one step of a method over one step of its base optimizer, on identical models and batches.

    The base optimizer's measured step is one pass plus its own step; the method's is all of its passes
    plus the base step. Both take the same warm-up steps first.

    Args:
        setup: model, batch, loss and warm-up, the same for both runs.
        build_optimizer: builds the method from the trainable parameters.
        build_base_optimizer: builds the plain base optimizer (same class and settings) from them.

    Returns:
        a :class:`MemoryOverhead`; ``extra_peak_buffers`` and ``persistent_extra_buffers`` are in units of
        the parameter bytes.
    """
    method = profile_step_memory(setup, build_optimizer)
    return MemoryOverhead(method=method, base=profile_step_memory(setup, build_base_optimizer))
