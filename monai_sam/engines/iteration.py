"""``SharpnessAwareIteration``: an ``iteration_update`` running any monai_sam optimizer in MONAI trainers."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import warnings
from typing import Any, TypeGuard, cast

import torch
from monai.data import MetaTensor
from monai.engines.trainer import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from monai_sam.engines.accumulation import GradientBuffer, accumulation_window, optimizer_steps
from monai_sam.engines.distributed import average_gradients, find_ddp
from monai_sam.engines.events import SharpnessEvents, SharpnessKeys
from monai_sam.engines.pass_context import RngReplay, bn_policy_context
from monai_sam.engines.precision import PrecisionPlan, autocast_settings, default_scaler_device, parse_dtype
from monai_sam.engines.step_plan import DDP_LAST_PASS, DDP_LOCAL, DDP_SYNCED, StepPlan
from monai_sam.optimizers.base import SharpnessAwareOptimizer, check_step_option
from monai_sam.optimizers.functional import all_finite
from monai_sam.optimizers.torch_private import grad_scaler_device

__all__ = ["SharpnessAwareIteration"]

logger = logging.getLogger(__name__)

#: what ``engine.prepare_batch`` gives, as (inputs, targets, extra forward args, extra forward kwargs).
Batch = tuple[Any, Any, tuple[Any, ...], dict[str, Any]]
#: (this iteration starts an accumulation window, it ends one: the optimizer steps).
Window = tuple[bool, bool]


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _as_plain_tensor(value: Any) -> tuple[Any, MetaTensor | None]:
    """Strip a MetaTensor for a compiled forward (pytorch#117026), keeping it to restore the meta later."""
    if isinstance(value, MetaTensor):
        return value.as_tensor(), value
    return value, None


def _with_meta(value: torch.Tensor, source: MetaTensor | None) -> Any:
    if source is None:
        return value
    return MetaTensor(value, meta=source.meta, applied_operations=source.applied_operations)


def _plain(value: torch.Tensor) -> torch.Tensor:
    """``value`` without a MetaTensor wrapper (the flags are stacked as plain tensors)."""
    return value.as_tensor() if isinstance(value, MetaTensor) else value


def _gradient_fault(optimizer: torch.optim.Optimizer) -> str:
    """Which pass of a sharpness-aware step made the final gradient non-finite (host read: error path)."""
    if not isinstance(optimizer, SharpnessAwareOptimizer):
        return "a plain optimizer: the gradient of the single pass"
    if optimizer.num_passes < optimizer.passes_per_step:
        return "a one-pass step (interval/start_step): the gradient of that pass"
    if bool(optimizer.last_perturbation_skipped):
        return "already the clean pass's gradient, or its norm beyond the float32 range"
    return "the clean gradient was finite: a perturbed pass or the method's combination overflowed"


class SharpnessAwareIteration:
    """Process function for ``SupervisedTrainer(iteration_update=...)`` running sharpness-aware optimizers.

    It reads ``engine.optimizer`` on every call. A :class:`~monai_sam.optimizers.SharpnessAwareOptimizer`
    is driven pass by pass through its manual API (``num_passes``, ``perturb``, ``unperturb``,
    ``base_step``); a plain ``torch.optim`` optimizer runs the single pass of MONAI's own ``_iteration``
    (same numbers, bit for bit), so one configuration can switch methods by name::

        trainer = SupervisedTrainer(..., optimizer=SAM(net.parameters(), torch.optim.SGD, lr=0.1),
                                    iteration_update=SharpnessAwareIteration(),
                                    event_names=[SharpnessEvents])

    MONAI's contract is kept: the network output reaches the loss and ``pred`` unchanged (tensor,
    tuple, list or dict; see ``output_index``), ``prepare_batch`` (2- or 4-tuple), ``engine.inferer``,
    FORWARD_COMPLETED and LOSS_COMPLETED after the clean pass, BACKWARD_COMPLETED once the final
    gradient is in ``.grad`` (weights restored), MODEL_COMPLETED after the optimizer step,
    ``optim_set_to_none``, ``compile``, ``accumulation_steps`` and ``amp``/``amp_kwargs``. ``loss`` and
    ``pred`` come from the clean pass; :class:`~monai_sam.engines.SharpnessKeys` lists the extra output
    keys. :class:`SharpnessEvents` fire between the passes (registered on the first call when missing).

    Args:
        bn_policy: BatchNorm running statistics during perturbed passes: ``"clean"`` (default; only
            the clean pass updates them), ``"all"`` (every pass does) or ``"momentum_zero"``.
        replay_rng: run every perturbed pass with the random state of the clean pass (same dropout
            masks, as official SAM). Default False (fresh masks, as most PyTorch ports).
        max_norm: clip the global norm of the final gradient (after unscaling) before the base step.
            With WSAM ``decouple=True`` this clips the gradient the base optimizer consumes.
        norm_type: norm used by ``max_norm`` clipping.
        amp: MONAI's ``amp``: on a CUDA device the passes run under CUDA autocast; on any other device
            nothing changes (fp32), exactly as in MONAI's ``SupervisedTrainer``, which autocasts only
            ``"cuda"``. None follows ``engine.amp``.
        amp_dtype: CUDA autocast dtype (``torch.float16``, ``torch.bfloat16`` or their names); None
            takes ``engine.amp_kwargs["dtype"]``, else CUDA's default (fp16).
        cpu_autocast_dtype: opt-in CPU autocast: on a CPU device run the passes under
            ``torch.autocast("cpu", dtype=...)`` (``"bfloat16"``, or ``"float16"`` with a GradScaler),
            whatever ``amp`` says. None (default): a CPU model trains in fp32, as in MONAI.
        grad_scaler: None (default) uses a GradScaler exactly when autocast runs in float16; True
            always under ``amp`` or CPU autocast; False never; a ``torch.amp.GradScaler`` instance is used
            with the default rule instead of the one this object creates.
        scaler_kwargs: keyword arguments of the created ``torch.amp.GradScaler`` (``init_scale``,
            ``growth_interval``...; ``device`` defaults to "cuda" when CUDA is available, else "cpu").
        sync_perturbation: under DistributedDataParallel, synchronise every pass (one global
            perturbation) instead of perturbing each rank with its local gradient (default, the
            SAM paper's m-sharpness).
        check_finite: without a GradScaler, raise ``FloatingPointError`` naming the iteration, the cause and
            the precision when the clean loss or the final gradient is NaN/inf, before the optimizer step
            (weights and optimizer state unchanged): one host read per iteration, after all passes are
            queued (so it does not stall the device between passes). False trains on, as MONAI does.
        output_index: None (default): the network's output goes to the loss function and into
            ``state.output["pred"]`` unchanged, as in MONAI's ``SupervisedTrainer`` (a tensor, tuple, list
            or dict; every deep-supervision head reaches the loss). An int opts in to keeping only that
            element of a tuple or list output (``0`` for MONAI ``ViT``'s ``(logits, hidden_states)``), for
            the loss of every pass, ``pred``, decollation, postprocessing and metrics; other outputs are
            left unchanged.
        interval: when given, sets the optimizer's ``interval``: the full method every ``interval``-th
            optimizer step, ONE forward/backward pass on the others (LookSAM: its ``k``).
        start_fraction: late-phase mode: when given, the first ``start_fraction`` of the run's optimizer
            steps (from ``max_epochs``, ``epoch_length`` and ``accumulation_steps``) are plain
            base-optimizer steps with ONE pass; the method runs from there on (sets ``start_step``).

    Attributes:
        scaler: the GradScaler this iteration owns (None with ``grad_scaler=False``); put it in the
            ``CheckpointSaver`` ``save_dict`` to resume the loss scale.
    """

    def __init__(
        self,
        bn_policy: str = "clean",
        replay_rng: bool = False,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        amp: bool | None = None,
        amp_dtype: torch.dtype | str | None = None,
        cpu_autocast_dtype: torch.dtype | str | None = None,
        grad_scaler: bool | torch.amp.GradScaler | None = None,
        scaler_kwargs: dict[str, Any] | None = None,
        sync_perturbation: bool = False,
        check_finite: bool = True,
        output_index: int | None = None,
        interval: int | None = None,
        start_fraction: float | None = None,
    ) -> None:
        if interval is not None:
            check_step_option("interval", interval, 1)
        if start_fraction is not None and not 0.0 <= start_fraction < 1.0:
            raise ValueError(f"`start_fraction` must be in [0, 1) or None, got {start_fraction!r}.")
        self.interval = interval
        self.start_fraction = start_fraction
        self._bn_context = bn_policy_context(bn_policy)
        self.bn_policy = bn_policy
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"`max_norm` must be a positive number or None, got {max_norm!r}.")
        self.replay_rng = bool(replay_rng)
        self.max_norm = max_norm
        self.norm_type = float(norm_type)
        self.amp = amp
        self.amp_dtype = parse_dtype(amp_dtype)
        self.cpu_autocast_dtype = parse_dtype(cpu_autocast_dtype, "cpu_autocast_dtype")
        if self.cpu_autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(
                f"`cpu_autocast_dtype` must be bfloat16, float16 or None, got {cpu_autocast_dtype!r}."
            )
        self._amp_noted = False
        self.sync_perturbation = bool(sync_perturbation)
        self.check_finite = bool(check_finite)
        if output_index is not None and (not isinstance(output_index, int) or isinstance(output_index, bool)):
            raise TypeError(f"`output_index` must be an int or None, got {output_index!r}.")
        self.output_index = output_index
        if isinstance(grad_scaler, torch.amp.GradScaler):
            if scaler_kwargs:
                raise ValueError("`scaler_kwargs` cannot be combined with a ready `grad_scaler` instance.")
            self.scaler: torch.amp.GradScaler | None = grad_scaler
            self._scaler_mode: bool | None = None
        elif grad_scaler is None or isinstance(grad_scaler, bool):
            kwargs = {"device": default_scaler_device(), **(scaler_kwargs or {})}
            self.scaler = None if grad_scaler is False else torch.amp.GradScaler(**kwargs)
            self._scaler_mode = grad_scaler
        else:
            raise TypeError(
                f"`grad_scaler` must be None, a bool or a torch.amp.GradScaler, got {grad_scaler!r}."
            )
        self._buffer = GradientBuffer()
        self._checked_optimizer: int | None = None
        self._step_plan: StepPlan | None = None

    # ------------------------------------------------------------------ checks and set-up
    def _is_sharpness_aware(self, optimizer: Any) -> TypeGuard[SharpnessAwareOptimizer]:
        """True for monai_sam optimizers, False for plain torch ones; raises for what cannot be driven."""
        from monai_sam.optimizers import SharpnessAwareOptimizer

        if isinstance(optimizer, SharpnessAwareOptimizer):
            return True
        if self._checked_optimizer == id(optimizer):
            return False
        name = type(optimizer).__name__
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"SharpnessAwareIteration: engine.optimizer must be a torch.optim.Optimizer, got {name}."
            )
        if hasattr(optimizer, "first_step") and hasattr(optimizer, "second_step"):
            raise TypeError(
                f"SharpnessAwareIteration cannot drive {name}: it looks like another library's SAM-style "
                "optimizer (first_step/second_step), which MONAI can only call once without a closure. "
                "Use the equivalent monai_sam.optimizers class (see available_optimizers())."
            )
        closure = inspect.signature(optimizer.step).parameters.get("closure")
        if closure is not None and closure.default is inspect.Parameter.empty:
            raise TypeError(
                f"SharpnessAwareIteration cannot drive {name}: its step() requires a closure (e.g. LBFGS), "
                "which MONAI trainers do not provide. Use a gradient-based optimizer or a monai_sam method."
            )
        self._checked_optimizer = id(optimizer)
        return False

    @staticmethod
    def _ensure_events(engine: SupervisedTrainer) -> None:
        """Register :class:`SharpnessEvents` on first use (earlier handlers need ``event_names``)."""
        if not engine.has_registered_events(SharpnessEvents.PERTURBED):
            engine.register_events(*SharpnessEvents)

    def _precision(self, engine: SupervisedTrainer, optimizer: torch.optim.Optimizer) -> PrecisionPlan:
        device = engine.state.device if engine.state.device is not None else torch.device("cpu")
        device = torch.device(device)
        amp = bool(engine.amp) if self.amp is None else self.amp
        kwargs = autocast_settings(
            device.type, amp, getattr(engine, "amp_kwargs", None), self.amp_dtype, self.cpu_autocast_dtype
        )
        if amp and kwargs is None and device.type != "cuda":
            self._note_amp_off_cuda(device.type)
        mixed = amp or kwargs is not None
        if not mixed:
            if self._scaler_mode is True:
                raise ValueError(
                    "SharpnessAwareIteration: grad_scaler=True needs AMP (amp=True or engine.amp, or "
                    "cpu_autocast_dtype)."
                )
            return PrecisionPlan(device.type)
        dtype = (kwargs or {}).get("dtype") or torch.get_autocast_dtype(device.type)
        use_scaler = self.scaler is not None and (
            self._scaler_mode
            if self._scaler_mode is not None
            else (kwargs is not None and dtype == torch.float16)
        )
        if not use_scaler or self.scaler is None:
            return PrecisionPlan(device.type, kwargs)
        if isinstance(optimizer, SharpnessAwareOptimizer) and not optimizer.supports_grad_scaler:
            raise ValueError(
                f"{type(optimizer).__name__} does not support a GradScaler (supports_grad_scaler=False): use "
                "bfloat16 autocast (amp_dtype='bfloat16' on CUDA, cpu_autocast_dtype='bfloat16' on a CPU) or "
                "fp32, or pass grad_scaler=False."
            )
        scaler_device = grad_scaler_device(self.scaler, device.type)
        if scaler_device != device.type:
            raise ValueError(
                f"SharpnessAwareIteration: the GradScaler is for device {scaler_device!r} but the engine "
                f"runs on {device.type!r}; pass scaler_kwargs={{'device': {device.type!r}}}."
            )
        return PrecisionPlan(device.type, kwargs, self.scaler)

    def _note_amp_off_cuda(self, device_type: str) -> None:
        """Say once that ``amp`` does not autocast off CUDA (MONAI's meaning), and how to opt in on a CPU."""
        if self._amp_noted:
            return
        self._amp_noted = True
        message = (
            f"SharpnessAwareIteration: amp=True autocasts only on CUDA, as MONAI's SupervisedTrainer does; "
            f"on this {device_type} device the passes run without autocast (fp32)."
            + (" For CPU autocast pass cpu_autocast_dtype='bfloat16'." if device_type == "cpu" else "")
        )
        if self.amp_dtype is not None:  # an explicit dtype that this device will not use
            warnings.warn(f"{message} amp_dtype={self.amp_dtype} applies to CUDA only.", stacklevel=3)
        else:
            logger.info(message)

    def _ddp_mode(self, engine: SupervisedTrainer, optimizer: SharpnessAwareOptimizer) -> str | None:
        if find_ddp(engine.network) is None:
            return None
        if self.sync_perturbation:
            return DDP_SYNCED
        if optimizer.final_grad_is_last_pass:
            return DDP_LAST_PASS
        if optimizer.has_post_step_correction:
            raise ValueError(
                f"{type(optimizer).__name__} applies part of its update from gradients kept inside the "
                "optimizer (WSAM decouple=True, bSAM's precision), so per-rank perturbations would "
                "desynchronise the ranks under DistributedDataParallel: pass sync_perturbation=True "
                "(or use decouple=False)."
            )
        return DDP_LOCAL

    def _apply_modes(self, engine: SupervisedTrainer, optimizer: SharpnessAwareOptimizer) -> None:
        """Set the optimizer's ``interval`` and late-phase ``start_step`` through its explicit method."""
        optimizer.set_modes(interval=self.interval, start_step=self._late_phase_start(engine, optimizer))

    def _late_phase_start(self, engine: SupervisedTrainer, optimizer: SharpnessAwareOptimizer) -> int | None:
        """The optimizer step where the method starts (``start_fraction`` of the run), None when not set."""
        if self.start_fraction is None:
            return None
        total = optimizer_steps(
            int(engine.state.max_epochs),
            int(engine.state.epoch_length),
            getattr(engine, "accumulation_steps", 1),
        )
        start = round(self.start_fraction * total)
        if optimizer.start_step != start:
            logger.info(
                "late phase: %s runs from optimizer step %d of %d (start_fraction=%s), base steps before.",
                type(optimizer).__name__,
                start,
                total,
                self.start_fraction,
            )
        return start

    def _settings(self, engine: SupervisedTrainer, optimizer: Any) -> tuple[Any, ...]:
        """Everything a :class:`StepPlan` is resolved from: a new plan is resolved when any of it changes.

        The optimizer's own modes are part of it, so modes changed from outside are set again (a resume
        agrees with the run's settings).
        """
        state = engine.state
        modes = (
            (optimizer.interval, optimizer.start_step)
            if isinstance(optimizer, SharpnessAwareOptimizer)
            else ()
        )
        return (
            id(engine),
            id(optimizer),
            modes,
            id(engine.network),
            state.device,
            state.max_epochs,
            state.epoch_length,
            getattr(engine, "accumulation_steps", 1),
            engine.amp,
            getattr(engine, "amp_kwargs", None),
            self.amp,
            self.amp_dtype,
            self.cpu_autocast_dtype,
            id(self.scaler),
            self._scaler_mode,
            self.sync_perturbation,
            self.interval,
            self.start_fraction,
        )

    def _plan(self, engine: SupervisedTrainer) -> StepPlan:
        """This iteration's :class:`StepPlan`: the last one while the settings are unchanged."""
        settings = self._settings(engine, engine.optimizer)
        if self._step_plan is None or self._step_plan.settings != settings:
            self._step_plan = self._resolve_plan(engine)
        return self._step_plan

    def _resolve_plan(self, engine: SupervisedTrainer) -> StepPlan:
        """Check the optimizer, set its modes and decide precision and the DDP mode for the run."""
        optimizer = engine.optimizer
        if not self._is_sharpness_aware(optimizer):
            return StepPlan(self._settings(engine, optimizer), self._precision(engine, optimizer), False)
        self._ensure_events(engine)
        self._apply_modes(engine, optimizer)
        optimizer.set_rest_at_true_weights(True)  # the iteration moves to MSAM's ascent point itself
        precision = self._precision(engine, optimizer)
        if engine.accumulation_steps > 1 and optimizer.has_post_step_correction:
            raise ValueError(
                f"{type(optimizer).__name__} keeps part of its update inside the optimizer (WSAM "
                "decouple=True, bSAM's precision), which gradient accumulation cannot sum: use "
                "accumulation_steps=1 (or WSAM decouple=False)."
            )
        ddp = find_ddp(engine.network)
        mode = self._ddp_mode(engine, optimizer)
        return StepPlan(self._settings(engine, optimizer), precision, True, ddp, mode)

    # ------------------------------------------------------------------ passes
    def _prepare(
        self, engine: SupervisedTrainer, batchdata: Any
    ) -> tuple[Any, Any, tuple[Any, ...], dict[str, Any], MetaTensor | None, MetaTensor | None]:
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        if len(batch) == 2:
            inputs, targets = batch
            args: tuple[Any, ...] = ()
            kwargs: dict[str, Any] = {}
        else:
            inputs, targets, args, kwargs = batch
        inputs_meta = targets_meta = None
        if getattr(engine, "compile", False):
            if isinstance(inputs, MetaTensor):
                warnings.warn(
                    "Will convert to PyTorch Tensor if using compile, and casting back to MetaTensor "
                    "after the forward pass.",
                    stacklevel=2,
                )
            inputs, inputs_meta = _as_plain_tensor(inputs)
            targets, targets_meta = _as_plain_tensor(targets)
        return inputs, targets, args, kwargs, inputs_meta, targets_meta

    def _select_output(self, pred: Any) -> Any:
        if self.output_index is not None and isinstance(pred, (tuple, list)):
            return pred[self.output_index]
        return pred

    def _clean_pass(self, engine: SupervisedTrainer, plan: PrecisionPlan, batch: Batch) -> torch.Tensor:
        """Pass 0 forward + loss, firing FORWARD_COMPLETED and LOSS_COMPLETED like MONAI's ``_iteration``."""
        inputs, targets, args, kwargs = batch
        with plan.autocast():
            pred = engine.inferer(inputs, engine.network, *args, **kwargs)
            engine.state.output[Keys.PRED] = self._select_output(pred)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.state.output[Keys.LOSS] = engine.loss_function(
                engine.state.output[Keys.PRED], targets
            ).mean()
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss: torch.Tensor = engine.state.output[Keys.LOSS]
        return loss

    def _check_finite(
        self,
        engine: SupervisedTrainer,
        optimizer: torch.optim.Optimizer,
        plan: PrecisionPlan,
        step_ends: bool,
    ) -> None:
        """Raise before the optimizer step when the clean loss, or at a step the final gradient, is NaN/inf.

        Only without a GradScaler (with one, a skipped step is the normal outcome). The one host read of an
        iteration happens here, after every pass of the micro-batch is queued, so it does not stall the
        device between the passes; the optimizer's own check is then skipped (``check_finite=False``).
        """
        if not self.check_finite or plan.scaler is not None:
            return
        loss = engine.state.output[Keys.LOSS]
        flags = [_plain(torch.isfinite(loss.detach()).all())]
        if step_ends:
            grads = [p.grad for p in _optimizer_params(optimizer) if p.grad is not None]
            flags.append(all_finite(grads, device=flags[0].device))
        loss_finite, *grad_finite = torch.stack(flags).tolist()
        where = f"at iteration {engine.state.iteration} (epoch {engine.state.epoch}) {plan.describe()}"
        if not loss_finite:
            raise FloatingPointError(
                f"SharpnessAwareIteration: the clean loss is {loss.detach().float().item()} {where}; "
                "training stopped before the optimizer step instead of continuing on NaN/inf. Lower the "
                "learning rate or rho, check the data, or pass check_finite=False."
            )
        if grad_finite and not grad_finite[0]:
            raise FloatingPointError(
                f"SharpnessAwareIteration: the final gradient is not finite (inf/NaN) {where}, although the "
                f"clean loss is finite ({_gradient_fault(optimizer)}). Training stopped before "
                "the optimizer step: the weights and the optimizer state are unchanged. Under bf16/fp16 "
                "autocast this is overflow of the low-precision backward: train in fp32 (no CPU autocast, "
                "the default) or use fp16 with a GradScaler (grad_scaler=True), which skips such steps. "
                "Otherwise lower the learning rate or rho and check the data; check_finite=False steps "
                "anyway."
            )

    def _perturbed_pass(self, engine: SupervisedTrainer, plan: PrecisionPlan, batch: Batch) -> torch.Tensor:
        """Pass k >= 1: forward + loss at the perturbed point (no MONAI events; ``pred`` stays clean)."""
        inputs, targets, args, kwargs = batch
        with plan.autocast():
            pred = self._select_output(engine.inferer(inputs, engine.network, *args, **kwargs))
            loss: torch.Tensor = engine.loss_function(pred, targets).mean()
            return loss

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, plan: PrecisionPlan) -> None:
        """Unscale (only when clipping), clip, step, update the scale."""
        scaler = plan.scaler
        if self.max_norm is not None:
            if scaler is not None:
                base = (
                    optimizer.base_optimizer if isinstance(optimizer, SharpnessAwareOptimizer) else optimizer
                )
                scaler.unscale_(base)
            torch.nn.utils.clip_grad_norm_(
                _optimizer_params(optimizer), self.max_norm, norm_type=self.norm_type, foreach=True
            )
        if isinstance(optimizer, SharpnessAwareOptimizer):
            optimizer.base_step(scaler, check_finite=False)  # checked in _check_finite (one host read)
        elif scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
        if scaler is not None:
            scaler.update()

    def _monai_iteration(
        self,
        engine: SupervisedTrainer,
        optimizer: torch.optim.Optimizer,
        plan: PrecisionPlan,
        batch: Batch,
        window: Window,
    ) -> None:
        """MONAI's ``_iteration`` body for a plain optimizer (same operations in the same order)."""
        acc = engine.accumulation_steps
        starts, ends = window
        if starts:
            optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        loss = self._clean_pass(engine, plan, batch)
        plan.backward(loss / acc if acc > 1 else loss)
        self._check_finite(engine, optimizer, plan, step_ends=ends)
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if ends:
            self._optimizer_step(optimizer, plan)

    def _sharpness_aware_step(
        self,
        engine: SupervisedTrainer,
        optimizer: SharpnessAwareOptimizer,
        plan: StepPlan,
        batch: Batch,
        window: Window,
    ) -> None:
        """One micro-batch of a monai-sam method: steps 2-6 of docs/monai.md's "What one iteration does".

        The network holds ``w`` before and after it: MSAM, which rests at its momentum-ascent point between
        optimizer steps, moves there first and back to ``w`` at the end, so every handler (validation,
        checkpoints, sharpness, logging) sees ``w``. A step that raises is closed first, so no perturbed
        weights reach an exception handler.
        """
        precision, acc, ends = plan.precision, engine.accumulation_steps, window[1]
        scopes = plan.pass_scopes(optimizer)
        rng = RngReplay(torch.device(engine.state.device or "cpu")) if self.replay_rng else None
        optimizer.move_to_perturbed_point()
        try:
            # 2. zero the gradients; 3. pass 0 at w (MONAI's events), its backward
            optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            if rng is not None:
                rng.capture()
            with scopes.pass_scope(0):
                clean_loss = self._clean_pass(engine, precision, batch)
                precision.backward(clean_loss / acc if acc > 1 else clean_loss)
            self._pass_completed(engine, 0)
            # 4. perturb, then pass k at the perturbed point
            last_loss, perturbed_losses = clean_loss.detach(), []
            for k in range(1, scopes.num_passes):
                optimizer.perturb(scopes.loss_for_optimizer(last_loss))
                engine.fire_event(SharpnessEvents.PERTURBED)
                replay = rng.replay() if rng is not None else contextlib.nullcontext()
                # The backward stays inside the BN context: autograd saved the running buffers it restores.
                with scopes.pass_scope(k), self._bn_context(engine.network):
                    with replay:
                        loss = self._perturbed_pass(engine, precision, batch)
                    precision.backward(loss / acc if acc > 1 else loss)
                last_loss = loss.detach()
                perturbed_losses.append(last_loss)
                self._pass_completed(engine, k)
            self._record_losses(engine, clean_loss.detach(), perturbed_losses, scopes.num_passes)
            # 5. restore w, final gradient in .grad; sum micro-batches, average ranks; finite check
            optimizer.unperturb(scopes.loss_for_optimizer(last_loss))
            engine.fire_event(SharpnessEvents.RESTORED)
            self._final_gradient(engine, optimizer, plan, ends)
            self._check_finite(engine, optimizer, precision, step_ends=ends)
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            # 6. unscale, clip, base step, scaler update
            if ends:
                self._optimizer_step(optimizer, precision)
        except BaseException:
            optimizer.end_passes()
            raise
        finally:
            optimizer.move_to_true_weights()

    def _final_gradient(
        self, engine: SupervisedTrainer, optimizer: SharpnessAwareOptimizer, plan: StepPlan, ends: bool
    ) -> None:
        """Sum the micro-batches of gradient accumulation and, at a step, average a local DDP mode's ranks."""
        params = _optimizer_params(optimizer)
        if engine.accumulation_steps > 1:
            self._buffer.add_grads(params)
            if ends:
                self._buffer.write_to_grads(params)
            else:
                optimizer.end_passes()
        if ends and plan.ddp_mode == DDP_LOCAL and plan.ddp is not None:
            # before the finite check: every rank sees the same final gradient and takes the same decision
            average_gradients(params, plan.ddp.process_group)

    @staticmethod
    def _pass_completed(engine: SupervisedTrainer, index: int) -> None:
        engine.state.sharpness_pass = index
        engine.fire_event(SharpnessEvents.PASS_COMPLETED)

    @staticmethod
    def _record_losses(
        engine: SupervisedTrainer, clean: torch.Tensor, perturbed: list[torch.Tensor], num_passes: int
    ) -> None:
        first = perturbed[0] if perturbed else torch.full_like(clean, math.nan)
        engine.state.output[SharpnessKeys.LOSS_PERTURBED] = first
        engine.state.output[SharpnessKeys.SHARPNESS] = first - clean
        engine.state.output[SharpnessKeys.NUM_PASSES] = num_passes

    # ------------------------------------------------------------------ entry point
    def __call__(self, engine: SupervisedTrainer, batchdata: Any) -> Any:
        """Run one training iteration on ``batchdata`` and return ``engine.state.output``."""
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        plan = self._plan(engine)  # the run-wide decisions, resolved once
        optimizer = engine.optimizer
        inputs, targets, args, kwargs, inputs_meta, targets_meta = self._prepare(engine, batchdata)
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        window = accumulation_window(
            engine.state.iteration, engine.state.epoch_length, getattr(engine, "accumulation_steps", 1)
        )
        engine.network.train()
        batch = (inputs, targets, args, kwargs)
        if plan.sharpness_aware:
            self._sharpness_aware_step(engine, cast(SharpnessAwareOptimizer, optimizer), plan, batch, window)
        else:
            self._monai_iteration(engine, optimizer, plan.precision, batch, window)
        if inputs_meta is not None:
            engine.state.output[Keys.IMAGE] = _with_meta(inputs, inputs_meta)
            engine.state.output[Keys.PRED] = _with_meta(engine.state.output[Keys.PRED], inputs_meta)
        if targets_meta is not None:
            engine.state.output[Keys.LABEL] = _with_meta(targets, targets_meta)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
