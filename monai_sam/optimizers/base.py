"""The shared base class of every sharpness-aware optimizer in monai-sam.

A sharpness-aware step runs several forward/backward passes over the same mini-batch at nearby points
(``w``, ``w + e``, ...), restores ``w`` by copy and hands one combined gradient to a base optimizer
(SGD, Adam, AdamW, ...). :class:`SharpnessAwareOptimizer` wires together what is common to all methods:
the pass state machine (:class:`~monai_sam.optimizers.step_passes.StepPasses`), the weight backup
(:class:`~monai_sam.optimizers.weight_backup.WeightBackup`), the base optimizer and its shared param
groups and state, the SAM-style ascent (the pure functions of :mod:`monai_sam.optimizers.ascent`), the
closure API, GradScaler support and checkpointing. A method declares its per-parameter tensors as
:class:`~monai_sam.optimizers.param_buffers.ParamBuffer` attributes and overrides the hooks
:meth:`_after_pass`, :meth:`_combine`, :meth:`_ascent_direction_` (GCSAM, F-SAM: the direction and norm of
the SAM ascent) and, rarely, :meth:`_after_base_step`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.ascent import ascent_directions, ascent_offsets
from monai_sam.optimizers.functional import (
    all_finite,
    global_norm,
    inverse_norm,
)
from monai_sam.optimizers.param_buffers import ParamBuffer
from monai_sam.optimizers.perturbation_set import perturbed_param_ids
from monai_sam.optimizers.step_passes import StepPasses, check_step_option
from monai_sam.optimizers.torch_private import grad_scaler_outcome, mark_stepped
from monai_sam.optimizers.weight_backup import WeightBackup

__all__ = ["SharpnessAwareOptimizer", "check_range", "check_step_option"]

# The key this step's copy of w had in ``method_state`` before it moved to WeightBackup; no entry uses it.
BACKUP = "sam_backup"

_STEP_HINT = (
    "{name}.step() needs a closure that computes the loss, calls loss.backward() and returns the loss; "
    "it is called once per pass. "
    "Without a closure use the pass-by-pass API: perturb() after each backward but the last, then "
    "unperturb() and base_step(). MONAI users: monai_sam.engines.SharpnessAwareIteration drives it for you."
)


def check_range(
    name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise ValueError naming ``name`` unless ``low <(=) value <(=) high`` (a hyperparameter check).

    Args:
        name: the hyperparameter's name, for the message.
        value: its value.
        low: lower bound.
        high: upper bound.
        low_open: exclude ``low`` itself.
        high_open: exclude ``high`` itself.
    """
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"Invalid {name}={value!r}: must be in {lo}{low}, {high}{hi}.")


class SharpnessAwareOptimizer(Optimizer):
    """Base class: a base optimizer wrapped into a multi-pass sharpness-aware step.

    Subclasses call ``super().__init__`` with their method hyperparameters in ``hyperparameters``; these are
    written into every param group (``setdefault``, so per-group values win) where schedulers can change
    them, and into :attr:`defaults`.

    Args:
        params: parameters or param-group dicts, as for any torch optimizer.
        base_optimizer: an optimizer class, built as ``base_optimizer(params, **base_kwargs)``, or a ready
            instance over the same parameters (then ``base_kwargs`` must be empty).
        hyperparameters: the method's per-group hyperparameters (``rho``, ``alpha``, ...).
        eps: added to every norm the method divides by (``rho / (norm + eps)``).
        interval: efficient mode: perturb only on every ``interval``-th step (the first step included);
            the other steps run ONE pass and are exactly a base-optimizer step (no norm, no copy).
        start_step: late-phase mode: steps ``0 .. start_step - 1`` are plain base-optimizer steps with ONE
            pass; the method (and the ``interval`` count) starts at step ``start_step``.
        perturb: which parameters the perturbation moves: ``"all"`` (default) or ``"norm"`` (SAM-ON: only
            the weights and biases of normalisation layers; the others stay at ``w`` and the norm of the
            perturbation is taken over the perturbed ones; every parameter is still updated). Every
            method accepts it (it is taken from the keyword arguments a subclass forwards).
        model: the network whose normalisation layers ``perturb="norm"`` selects (optimizers only see
            tensors); ignored with ``perturb="all"``.
        base_kwargs: keyword arguments of the base optimizer class (``lr``, ``momentum``, ...).

    Attributes:
        base_optimizer: the wrapped optimizer; ``param_groups`` and ``state`` are shared with it.
        last_perturbation_skipped: 0-d bool tensor, True when the last clean gradient was not finite and the
            perturbation was therefore zero.
        last_grad_norm: 0-d fp32 tensor, global norm of the last clean gradient.
    """

    #: True when perturb()/unperturb() need the loss of the pass just done.
    needs_loss: bool = False
    #: True when the method is exact with gradients scaled by a GradScaler (never unscaled between passes).
    supports_grad_scaler: bool = True
    #: forward/backward passes of a full (perturbing) step.
    passes_per_step: int = 2
    #: True when the final gradient of a full step is exactly the last pass's gradient (SAM, ASAM): under
    #: DDP only that pass needs to all-reduce; the others may stay local.
    final_grad_is_last_pass: bool = False
    #: True when part of the update is applied after the base step from buffers kept inside the optimizer
    #: (WSAM decoupled), so ``.grad`` alone does not describe the update.
    has_post_step_correction: bool = False
    #: True when the method has its own update and takes no base optimizer (bSAM).
    own_update: bool = False
    #: per-group hyperparameters that must be >= 0 (validated for every group, also added ones).
    non_negative: tuple[str, ...] = ("rho",)
    #: whether the default pass-0 hook keeps g0 (in :attr:`clean_grad`) for the combination.
    keeps_clean_grad: bool = False
    #: keys of the method's persistent :class:`ParamBuffer` declarations (set for every subclass).
    persistent_keys: tuple[str, ...] = ()
    #: peak: g0, the pass-0 gradient tensor itself (moved, not copied), for methods that combine with it.
    clean_grad = ParamBuffer("sam_clean_grad")
    #: True when the weights rest at a perturbed point between steps (MSAM): evaluation and saving must
    #: then run inside :meth:`true_weights` (the MONAI engines of monai-sam do it for you).
    perturbed_between_steps: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = {
            value.key: value
            for klass in reversed(cls.__mro__)
            for value in vars(klass).values()
            if isinstance(value, ParamBuffer)
        }
        cls.persistent_keys = tuple(key for key, buffer in declared.items() if buffer.persistent)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        *,
        hyperparameters: dict[str, Any] | None = None,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        perturb: str = "all",
        model: torch.nn.Module | None = None,
        **base_kwargs: Any,
    ) -> None:
        hyper = dict(hyperparameters or {})
        check_range("eps", eps, 0.0, float("inf"))
        # Checked here, before a given base instance is touched.
        self._passes = StepPasses(type(self).__name__, interval, start_step)
        base = self._build_base(params, base_optimizer, base_kwargs)
        clash = sorted(set(hyper) & set(base.defaults))
        if clash:
            raise ValueError(
                f"{type(self).__name__}: the base optimizer {type(base).__name__} uses the param-group "
                f"key(s) {clash} for its own hyperparameters; they would shadow the method's. "
                "Choose another base optimizer."
            )
        # Optimizer.__init__ setdefault()s the hyperparameters into the base's group dicts in place.
        super().__init__(base.param_groups, hyper)
        self.base_optimizer = base
        self.param_groups = base.param_groups
        self.state = base.state
        # The method's own per-parameter tensors. Not in the shared ``state``: base optimizers such as Adam
        # initialise a parameter's state when its dict is empty, so foreign keys there would break them.
        self.method_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self._weights = WeightBackup()  # this step's copy of w, in buffers reused every step
        self.eps = float(eps)
        self.perturb_mode = perturb  # "all" or "norm" (the `perturb` option; perturb() is the pass API)
        # SAM-ON: ids of the perturbed parameters (None: all); the tensors are kept so the ids stay valid.
        self._perturbed_ids, self._perturbed_refs = perturbed_param_ids(
            perturb, model, self._indexed_params(), type(self).__name__
        )
        for group in self.param_groups:
            self._validate_group(group)
        device = self._first_param().device
        self.last_perturbation_skipped = torch.zeros((), dtype=torch.bool, device=device)
        self.last_grad_norm = torch.zeros((), dtype=torch.float32, device=device)

    @classmethod
    def base_problem(
        cls, base: type[Optimizer], base_kwargs: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> str | None:
        """Why this method cannot wrap an optimizer of class ``base``, or None when it can.

        Checked before anything is built (``monai-sam overlay`` checks a bundle's optimizer with it when the
        overlay is written). Every method wraps any gradient-based optimizer, unless it overrides this.

        Args:
            base: the optimizer class to wrap.
            base_kwargs: its keyword arguments as far as known (config values may be references).
            hyperparameters: the method's keyword arguments.
        """
        return None

    @staticmethod
    def _build_base(
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer,
        base_kwargs: dict[str, Any],
    ) -> Optimizer:
        if isinstance(base_optimizer, Optimizer):
            if base_kwargs:
                raise ValueError(
                    f"base_optimizer is a ready instance; unexpected base kwargs {sorted(base_kwargs)} "
                    "(configure the instance instead, or pass its class)."
                )
            own = {id(p) for g in base_optimizer.param_groups for p in g["params"]}
            given: list[Tensor] = []
            for item in params:
                given.extend(item["params"] if isinstance(item, dict) else [item])
            if {id(p) for p in given} != own:
                raise ValueError(
                    "params must be exactly the parameters of the given base_optimizer instance."
                )
            return base_optimizer
        if inspect.isclass(base_optimizer) and issubclass(base_optimizer, Optimizer):
            return base_optimizer(params, **base_kwargs)
        raise TypeError(
            f"base_optimizer must be a torch.optim.Optimizer class or instance, got {base_optimizer!r}."
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check the method hyperparameters of one param group (subclasses extend)."""
        for name in self.non_negative:
            if name in group:
                check_range(name, group[name], 0.0, float("inf"))

    def _first_param(self) -> Tensor:
        first: Tensor = self.param_groups[0]["params"][0]
        return first

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the base optimizer, with this method's hyperparameter defaults."""
        if not hasattr(self, "base_optimizer"):  # called by Optimizer.__init__
            super().add_param_group(param_group)
            return
        for key, value in self.defaults.items():
            param_group.setdefault(key, value)
        self._validate_group(param_group)
        self.base_optimizer.add_param_group(param_group)

    # ------------------------------------------------------------------ step bookkeeping
    @property
    def interval(self) -> int:
        """The full method every ``interval``-th step (counted from ``start_step``), one pass otherwise."""
        return self._passes.interval

    @interval.setter
    def interval(self, value: int) -> None:
        self._passes.interval = value

    @property
    def start_step(self) -> int:
        """Late-phase mode: steps before this one are plain base-optimizer steps with one pass."""
        return self._passes.start_step

    @start_step.setter
    def start_step(self, value: int) -> None:
        self._passes.start_step = value

    @property
    def _step_count(self) -> int:
        """Completed steps (full or one-pass)."""
        return self._passes.step_count

    @_step_count.setter
    def _step_count(self, value: int) -> None:
        self._passes.step_count = value

    @property
    def _workspace(self) -> dict[Tensor, Tensor]:
        """The weight backup's persistent buffers (one per parameter ever backed up)."""
        return self._weights.workspace

    def set_modes(self, *, interval: int | None = None, start_step: int | None = None) -> None:
        """Set the pass-skipping modes (a driver's switch; monai-sam's MONAI iteration uses it).

        Args:
            interval: the full method every ``interval``-th step (>= 1); None keeps the current one.
            start_step: plain base-optimizer steps before this one (>= 0); None keeps the current one.
        """
        if interval is not None:
            self.interval = interval
        if start_step is not None:
            self.start_step = start_step

    @property
    def num_passes(self) -> int:
        """Forward/backward passes the NEXT step takes (1 on a step skipped by interval or start_step)."""
        return self._passes.passes_of_next_step(self.passes_per_step)

    def _check_loss(self, loss: Tensor | None, call: str) -> None:
        if self.needs_loss and loss is None:
            raise ValueError(
                f"{type(self).__name__}.{call}() needs the unscaled loss of the pass just done: "
                f"{call}(loss.detach())."
            )

    @torch.no_grad()
    def perturb(self, loss: Tensor | None = None) -> None:
        """Consume the gradients of the pass just done and move the weights to the next pass's point.

        Clears the gradients (``set_to_none``) afterwards.

        Args:
            loss: the unscaled, detached loss of that pass (required when :attr:`needs_loss`).
        """
        passes = self._passes
        passes.check_perturb(self.num_passes)
        self._check_loss(loss, "perturb")
        passes.full_step = True
        self._after_pass(passes.passes_done, loss)
        self.zero_grad(set_to_none=True)
        passes.passes_done += 1

    @torch.no_grad()
    def unperturb(self, loss: Tensor | None = None) -> None:
        """Consume the last pass's gradients, restore ``w`` by copy and write the final gradient to ``.grad``.

        Args:
            loss: the unscaled, detached loss of the last pass (required when :attr:`needs_loss`).
        """
        passes = self._passes
        n = self.num_passes
        passes.check_unperturb(n)
        self._check_loss(loss, "unperturb")
        passes.full_step = n > 1
        if n == 1:
            self._one_pass_step(loss)
        else:
            self._weights.restore()
            self._combine(loss)
            # A non-finite clean gradient must skip the step even when the later passes were finite
            # (the perturbation was zeroed): a GradScaler then skips it and lowers the scale.
            self._poison_final_grad(self.last_perturbation_skipped)
        passes.unperturbed = True

    def base_step(self, scaler: torch.amp.GradScaler | None = None, *, check_finite: bool = True) -> None:
        """Step the base optimizer with the final gradient, then apply any post-step correction.

        A step whose final gradient is not finite is never applied: an enabled GradScaler skips it (and
        lowers the scale); without one it raises ``FloatingPointError`` before the base optimizer runs,
        so the weights and the base optimizer's state stay as they were.

        Args:
            scaler: an optional GradScaler; when enabled, ``scaler.step(self.base_optimizer)`` is used (it
                unscales unless the caller already did). ``scaler.update()`` is left to the caller.
            check_finite: without an enabled GradScaler, check the final gradient before stepping: one
                host read per step. False skips the read, for a caller that checked it already (monai-sam's
                iteration reads it together with the loss) or that accepts stepping on inf/NaN.

        Raises:
            FloatingPointError: the final gradient is not finite (``check_finite``, no GradScaler).
        """
        self._passes.check_base_step()
        skipped = inv_scale = None
        if scaler is not None and scaler.is_enabled():
            scaler.step(self.base_optimizer)
            skipped, inv_scale = grad_scaler_outcome(scaler, self.base_optimizer, self._first_param().device)
        else:
            if check_finite and not bool(self.final_gradient_is_finite()):
                self._refuse_step()
            self.base_optimizer.step()
        if self._passes.full_step:
            with torch.no_grad():
                self._after_base_step(skipped, inv_scale)
        mark_stepped(self)
        self._passes.close(stepped=True)

    @torch.no_grad()
    def end_passes(self) -> None:
        """Close the current step's passes without a base step (e.g. a micro-batch of gradient accumulation).

        After :meth:`unperturb` the final gradient stays in ``.grad`` and only the bookkeeping is reset (a
        pending post-step correction, WSAM's decoupled term, is dropped). In the middle of the passes the
        weights are also restored by copy. The step counter does not advance.
        """
        if self._passes.passes_done and not self._passes.unperturbed:
            self._weights.restore()
        for values in self.method_state.values():
            for key in [k for k in values if k not in self.persistent_keys]:
                del values[key]
        self._passes.close(stepped=False)

    @torch.no_grad()
    def final_gradient_is_finite(self) -> Tensor:
        """0-d bool device tensor (no host read): every ``.grad`` entry is finite. Call it after unperturb().

        After a full step the final gradient is made non-finite when the clean gradient was (see
        :attr:`last_perturbation_skipped`), so this one flag covers every pass of the step.
        """
        _, grads = self._grads()
        return all_finite(grads, device=self.last_grad_norm.device)

    def _refuse_step(self) -> None:
        """Close the step without a base step and raise FloatingPointError naming the pass at fault."""
        full = self._passes.full_step
        clean_bad = full and bool(self.last_perturbation_skipped)
        self.end_passes()
        name = type(self).__name__
        if clean_bad:
            where = (
                "the clean gradient (pass 1) already was not finite (or its norm exceeded the float32 range)"
            )
        elif full:
            where = "the clean gradient was finite, so a perturbed pass or the combination overflowed"
        elif self.passes_per_step > 1:
            where = "this was a one-pass step (interval/start_step), so the gradient itself was not finite"
        else:
            where = "the gradient of its one pass was not finite"
        raise FloatingPointError(
            f"{name}: the final gradient of step {self._step_count} is not finite (inf/NaN): {where}. The "
            "step was not taken: the weights and the base optimizer's state are unchanged. Without a "
            "GradScaler to skip such steps this stops training. Usual causes: a diverging loss (lower the "
            "learning rate or rho), bad input data, or overflow under fp16/bf16 autocast (fp16: pass a "
            "GradScaler to base_step(scaler), which skips such steps; bf16: train in fp32). "
            "base_step(check_finite=False) steps anyway."
        )

    def first_step(self, loss: Tensor | None = None) -> None:
        """davda54-style alias of :meth:`perturb` for two-pass methods."""
        self.perturb(loss)

    def second_step(self, loss: Tensor | None = None) -> None:
        """davda54-style alias of :meth:`unperturb` followed by :meth:`base_step`."""
        self.unperturb(loss)
        self.base_step()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run a whole sharpness-aware step, calling ``closure`` once per pass.

        The gradients are cleared before every call, so the closure may or may not zero them itself. It
        must compute the loss, call ``backward()`` and return the loss.

        Returns:
            the loss returned by the first (clean) call of ``closure``.
        """
        if closure is None:
            raise RuntimeError(_STEP_HINT.format(name=type(self).__name__))
        if self._passes.in_step:
            raise RuntimeError(f"{type(self).__name__}.step(closure) called in the middle of a manual step.")
        n = self.num_passes
        first = None
        for k in range(n):
            self.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = closure()
            if k == 0:
                first = loss
            if self.needs_loss and not isinstance(loss, Tensor):
                raise ValueError(f"{type(self).__name__} needs the closure to return the loss tensor.")
            detached = loss.detach() if isinstance(loss, Tensor) else None
            if k < n - 1:
                self.perturb(detached)
            else:
                self.unperturb(detached)
        self.base_step()
        return first

    # ------------------------------------------------------------------ true weights between steps
    @contextlib.contextmanager
    def true_weights(self) -> Iterator[None]:
        """Context in which the parameters hold the true (unperturbed) weights ``w``.

        For methods that restore ``w`` at the end of every step this does nothing. For MSAM, whose weights
        wait at the momentum-ascent point between steps, it moves them to ``w`` and back (bit-exactly)
        on exit. Evaluate, measure sharpness or save ``model.state_dict()`` inside it in a plain PyTorch
        loop; monai-sam's MONAI engines keep ``w`` outside their iterations on their own.
        """
        was_perturbed = self.perturbed_between_steps and self._at_perturbed_point()
        self.move_to_true_weights()
        try:
            yield
        finally:
            if was_perturbed:
                self.move_to_perturbed_point()

    def _at_perturbed_point(self) -> bool:
        return False

    def set_rest_at_true_weights(self, rest: bool) -> None:
        """Where a method that waits at a perturbed point between steps (MSAM) ends each step.

        False (its default in a plain loop): at the perturbed point, ready for the next step's pass. True:
        at the true weights, for a driver that moves to the perturbed point itself before each step
        (monai-sam's MONAI iteration and :class:`~monai_sam.handlers.TrueWeightsHandler` do). A no-op for
        methods that always end at ``w``.

        Args:
            rest: end each step at the true weights.
        """

    def move_to_true_weights(self) -> None:
        """Put the true weights ``w`` into the parameters between steps (no-op unless
        :attr:`perturbed_between_steps`)."""

    def move_to_perturbed_point(self) -> None:
        """Move the parameters to where the next step's first pass must run (no-op unless
        :attr:`perturbed_between_steps`; MSAM: the momentum-ascent point). Idempotent."""

    # ------------------------------------------------------------------ hooks for the methods
    def _after_pass(self, k: int, loss: Tensor | None) -> None:
        """Consume the ``.grad`` of pass ``k`` (not the last) and move the weights to pass ``k + 1``."""
        self._ascend(keep_clean=self.keeps_clean_grad)

    def _combine(self, loss: Tensor | None) -> None:
        """After the restore: turn the last pass's ``.grad`` (and stored state) into the final gradient."""

    def _one_pass_step(self, loss: Tensor | None) -> None:
        """A one-pass step (skipped by interval/start_step, or MSAM's every step): ``.grad`` holds the pass's
        gradient and the base optimizer uses it as is (no extra work at all)."""

    def _after_base_step(self, skipped: Tensor | None, inv_scale: Tensor | None) -> None:
        """Post-step correction of a full step; ``skipped``/``inv_scale`` come from an enabled GradScaler."""

    # ------------------------------------------------------------------ shared machinery
    def _grads(self) -> tuple[list[Tensor], list[Tensor]]:
        """(params, grads) of every parameter that has a gradient now, across all groups."""
        params, grads = [], []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    params.append(p)
                    grads.append(p.grad)
        return params, grads

    def _group_grads(self) -> list[tuple[dict[str, Any], list[Tensor], list[Tensor]]]:
        """Per group: (group, params with a gradient, their gradients)."""
        out = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            out.append((group, params, [p.grad for p in params]))
        return out

    def _perturbed(self, params: list[Tensor]) -> list[Tensor]:
        """The members of ``params`` a perturbation may move (``perturb="norm"``: norm-layer ones only).

        Every method takes the tensors it backs up and perturbs from here, so SAM-ON applies to all.
        """
        if self._perturbed_ids is None:
            return params
        return [p for p in params if id(p) in self._perturbed_ids]

    def _record_clean_norm(self, grads: list[Tensor], norm: Tensor | None = None) -> Tensor:
        """Store the clean-gradient status tensors and return the global norm."""
        if norm is None:
            norm = global_norm(grads, device=self.last_grad_norm.device)
        self._clean_norm = norm  # full precision (fp64 for fp64 grads), for methods that reuse it
        self.last_grad_norm = norm.detach().to(torch.float32)
        self.last_perturbation_skipped = ~torch.isfinite(norm)
        return norm

    def _poison_final_grad(self, flag: Tensor) -> None:
        """Make one entry of the final gradient NaN when ``flag`` is set (adds exactly 0 otherwise)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    entry = p.grad[(0,) * p.grad.ndim]  # a view: add_ writes through
                    flag = flag.to(entry.device)
                    entry.add_(torch.where(flag, torch.nan, 0.0).to(entry.dtype))
                    return

    def _aligned(
        self, *stored: dict[Tensor, Tensor]
    ) -> tuple[list[Tensor], list[list[Tensor]], list[Tensor]]:
        """Align stored per-param tensors with the current gradients; a missing one counts as zero.

        Returns (params, one list per ``stored`` dict, current grads) over every parameter that has any of
        them. Parameters without a current gradient get a zero ``.grad`` so the final gradient can be
        written in place.
        """
        out_p, out_g = [], []
        out_s: list[list[Tensor]] = [[] for _ in stored]
        for group in self.param_groups:
            for p in group["params"]:
                values = [s.get(p) for s in stored]
                if p.grad is None and all(v is None for v in values):
                    continue
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                out_p.append(p)
                out_g.append(p.grad)
                for column, v in zip(out_s, values):
                    column.append(v if v is not None else torch.zeros_like(p.grad))
        return out_p, out_s, out_g

    def _ascent_direction_(
        self, per_group: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]], norm: Tensor
    ) -> Tensor:
        """Turn the clean gradients into the ascent direction in place; return the norm to divide by.

        Called by :meth:`_ascend` after the clean norm is recorded and the weights are backed up, with the
        ``(group, params, grads)`` that are perturbed. SAM: the gradient itself and its norm (``norm``).
        GCSAM centralises, F-SAM subtracts a moving average; their norms may differ from ``norm``.
        """
        return norm

    def _ascent_transform(self, group: dict[str, Any], params: list[Tensor]) -> list[Tensor | None] | None:
        """Per-tensor element-wise ``T`` of adaptive methods (``None``: identity). SAM: identity.

        Called after the weights are backed up: an implementation may compute ``T`` in place in the
        parameter tensors themselves (ASAM does), so ``T`` costs no buffer; they are re-set from the backup.
        """
        return None

    @staticmethod
    def _split_perturbed(
        per_group: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]], chosen: frozenset[int]
    ) -> tuple[list[tuple[dict[str, Any], list[Tensor], list[Tensor]]], list[Tensor]]:
        """SAM-ON: (the perturbed members of every group, the parameters with a gradient that stay at w)."""
        kept_groups: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]] = []
        resting: list[Tensor] = []
        for group, params, _ in per_group:
            kept = [p for p in params if id(p) in chosen]
            resting.extend(p for p in params if id(p) not in chosen)
            kept_groups.append((group, kept, [cast(Tensor, p.grad) for p in kept]))
        return kept_groups, resting

    def _ascend(self, keep_clean: bool = False) -> None:
        """The SAM ascent from the pass-0 gradients: ``w <- w + rho * T^2 g / (||T g|| + eps)``.

        Records the status tensors, backs up the weights and optionally moves g0 into the state
        (:attr:`clean_grad`). A non-finite g0 gives a zero perturbation. Without ``keep_clean`` the only
        parameter-sized buffer is the weight backup: ``T g`` and ``e`` are computed in the gradient buffers.
        """
        per_group = self._group_grads()
        norm = self._record_clean_norm([g for _, _, grads in per_group for g in grads])
        resting: list[Tensor] = []  # SAM-ON: parameters with a gradient that stay at w
        if self._perturbed_ids is not None:
            per_group, resting = self._split_perturbed(per_group, self._perturbed_ids)
            norm = global_norm([g for _, _, grads in per_group for g in grads], device=norm.device)
        self._weights.save([p for _, params, _ in per_group for p in params])
        norm = self._ascent_direction_(per_group, norm)
        transforms = [self._ascent_transform(group, params) for group, params, _ in per_group]
        adaptive = any(t is not None for t in transforms)
        directions = []  # T g per group: in place when g0 is not kept, so it costs no buffer
        for (_, _, grads), t in zip(per_group, transforms):
            directions.append(ascent_directions(grads, t, inplace=not keep_clean))
        if adaptive:
            norm = global_norm([d for ds in directions for d in ds], device=self.last_grad_norm.device)
            self.last_perturbation_skipped = self.last_perturbation_skipped | ~torch.isfinite(norm)
        inv = inverse_norm(norm, self.eps)
        if resting:  # SAM-ON: the norm is over the perturbed set, but any non-finite g0 still skips
            inv = torch.where(self.last_perturbation_skipped, torch.zeros_like(inv), inv)
        self._ascent_inv_norm = inv
        for (group, params, _), direction, t in zip(per_group, directions, transforms):
            if not params:
                continue
            # In place when g0 is not needed any more (SAM, ASAM): the gradient buffer becomes e.
            e = ascent_offsets(direction, inv * group["rho"], t, inplace=not keep_clean)
            if keep_clean:
                self.clean_grad.stash(params)
            if t is None:
                torch._foreach_add_(params, e)
            else:  # the parameters may hold T now
                self._weights.move_to_plus(params, e)
        if keep_clean and resting:
            self.clean_grad.stash(resting)  # g0 of the unperturbed parameters, for the combination

    # ------------------------------------------------------------------ checkpointing
    def _extra_state(self) -> dict[str, Any]:
        """Method state that is not per parameter (subclasses extend)."""
        return {"step": self._step_count}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._step_count = int(extra.get("step", 0))

    def _indexed_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict plus the method's state under ``"sharpness_aware"``.

        Per-parameter method tensors are keyed by the parameter's index, like torch's optimizer state.
        """
        self._passes.check_between_steps("state_dict()")
        state = self.base_optimizer.state_dict()
        per_param = {
            index: dict(self.method_state[p])
            for index, p in enumerate(self._indexed_params())
            if self.method_state.get(p)
        }
        state["sharpness_aware"] = {**self._extra_state(), "per_param": per_param}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by :meth:`state_dict`; re-points the shared param groups and state."""
        state_dict = dict(state_dict)
        extra = dict(state_dict.pop("sharpness_aware", {}))
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.method_state = defaultdict(dict)
        params = self._indexed_params()
        for index, values in extra.pop("per_param", {}).items():
            p = params[int(index)]
            self.method_state[p] = {
                k: v.to(p.device, p.dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in values.items()
            }
        self._load_extra_state(extra)
