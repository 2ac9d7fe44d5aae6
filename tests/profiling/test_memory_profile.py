"""The memory profiler reproduces known allocations; the sharpness-aware steps stay within their budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_sam.optimizers import create_optimizer
from monai_sam.optimizers.registry import METHOD_REGISTRY
from monai_sam.profiling import CalibrationSGD, StepSetup, measure_memory_overhead, profile_step_memory

TOL = 0.05  # parameter-sized buffers; the model has 93 k parameters, so scalars and indices are far below
# Tiny images keep the activations far below the parameter bytes, and the methods run over plain SGD, whose
# step allocates nothing: a temporary of the method cannot hide under the activations or the base step.


class _TupleOutput(nn.Module):
    """Returns ``(logits, None)`` like MONAI's ViT."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(x), None


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 2),
    )


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 4, 4, generator=generator), torch.tensor([0, 1])


def _sgd(params):
    return torch.optim.SGD(params, lr=0.01)


def _adam(params):
    return create_optimizer("adam", params, lr=1e-3)


def _method(name: str, **kwargs):
    return lambda params: create_optimizer(name, params, base="sgd", lr=0.01, **kwargs)


def _overhead(build, base, batch, model=_net, warmup_steps=1):
    return measure_memory_overhead(StepSetup(model, *batch, warmup_steps=warmup_steps), build, base)


def test_two_transient_clones_measure_two_buffers(batch):
    result = _overhead(lambda p: CalibrationSGD(p, clones=2, lr=0.01), _sgd, batch)
    assert result.param_bytes == sum(p.numel() * 4 for p in _net().parameters())
    assert result.extra_peak_buffers == pytest.approx(2.0, abs=TOL)
    assert result.persistent_extra_buffers == pytest.approx(0.0, abs=TOL)


def test_one_persistent_clone_measures_one_buffer_at_peak_and_after(batch):
    result = _overhead(lambda p: CalibrationSGD(p, clones=1, persistent=True, lr=0.01), _sgd, batch)
    assert result.extra_peak_buffers == pytest.approx(1.0, abs=TOL)
    assert result.persistent_extra_buffers == pytest.approx(1.0, abs=TOL)


def test_base_optimizer_against_itself_is_zero(batch):
    result = _overhead(_adam, _adam, batch)
    assert result.method.peak_bytes > result.param_bytes  # the model itself was counted
    assert result.extra_peak_bytes == 0
    assert result.persistent_extra_bytes == 0


def test_tuple_output_models_are_measured(batch):
    result = _overhead(
        lambda p: CalibrationSGD(p, clones=1, lr=0.01), _sgd, batch, model=lambda: _TupleOutput(_net())
    )
    assert result.extra_peak_buffers == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("name", ["sam", "asam", "ssam"])
def test_sam_asam_ssam_hold_at_most_one_buffer(name, batch):
    # Issue 7 target: at most one parameter-sized buffer (the weight backup) over the base optimizer.
    result = _overhead(_method(name), _sgd, batch)
    assert 1.0 - TOL <= result.extra_peak_buffers <= 1.0 + TOL


def test_gsam_holds_backup_and_clean_gradient(batch):
    result = _overhead(_method("gsam"), _sgd, batch)
    assert result.extra_peak_buffers == pytest.approx(2.0, abs=TOL)


@pytest.mark.parametrize("name, kwargs", [("sam", {"interval": 5}), ("looksam", {"k": 5})])
def test_off_steps_cost_nothing_beyond_persistent_buffers(name, kwargs, batch):
    # Warm-up step 0 is a full step; measured step 1 is an off-step (one pass).
    # Persistent: SAM's backup workspace, LookSAM's gv (and workspace); the off-step adds nothing on top.
    off = _overhead(_method(name, **kwargs), _sgd, batch, warmup_steps=1)
    assert off.persistent_extra_buffers >= 1.0 - TOL
    assert off.extra_peak_buffers - off.persistent_extra_buffers == pytest.approx(0.0, abs=TOL)


def test_bad_arguments_are_named(batch):
    with pytest.raises(ValueError, match="warmup_steps"):
        StepSetup(_net, *batch, warmup_steps=-1)
    with pytest.raises(ValueError, match="meta"):
        StepSetup(_net, batch[0].to("meta"), batch[1])
    with pytest.raises(ValueError, match="clones"):
        CalibrationSGD(_net().parameters(), clones=-1, lr=0.1)
    with pytest.raises(ValueError, match="trainable"):
        profile_step_memory(StepSetup(lambda: nn.Sequential(nn.ReLU()), *batch), _sgd)
    widths = iter([8, 16])  # the method's model and the base's model differ: refused

    def model() -> nn.Module:
        width = next(widths)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, width), nn.Linear(width, 2))

    with pytest.raises(ValueError, match="identical models"):
        measure_memory_overhead(StepSetup(model, *batch), _sgd, _sgd)


def _registry_case(name: str):
    """(method builder, baseline builder, parameter-sized tensors of the method's own update state)."""
    if name == "bsam":  # its own Adam-like update keeps m and s: the base optimizer's state of the others
        return lambda params: create_optimizer("bsam", params, num_data=64, lr=0.01), _sgd, 2
    if name == "msam":  # perturbs along the base's momentum: both sides keep it
        return _method("msam", momentum=0.9), lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9), 0
    return _method(name), _sgd, 0


@pytest.mark.parametrize("info", METHOD_REGISTRY, ids=lambda info: info.name)
def test_the_registry_declares_each_methods_measured_peak_buffers(info, batch):
    """``MethodInfo.buffers[0]`` is the peak the profiler measures at the defaults, in whole buffers."""
    build, base, own_state = _registry_case(info.name)
    result = _overhead(build, base, batch)
    assert result.extra_peak_buffers - own_state == pytest.approx(info.buffers[0], abs=0.5)
