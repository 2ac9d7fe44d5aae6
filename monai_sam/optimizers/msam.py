"""MSAM: Becker, Altrock, Risse, "Momentum-SAM: Sharpness Aware Minimization without Computational
Overhead" (arXiv 2401.12033, 2024)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.functional import global_norm, inverse_norm

__all__ = ["MSAM"]

#: base optimizers whose first-moment buffer is ``state["exp_avg"]``.
_EXP_AVG_BASES = (
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adamax,
)


_NO_SGD_MOMENTUM = (
    "MSAM perturbs along the momentum, but the SGD base has momentum=0: pass momentum > 0 "
    "(e.g. momentum=0.9)."
)


def _known_momentum_key(base: type[Optimizer]) -> str | None:
    """The state key of ``base``'s momentum buffer for the classes MSAM knows, else None."""
    if issubclass(base, torch.optim.SGD):
        return "momentum_buffer"
    if issubclass(base, _EXP_AVG_BASES):
        return "exp_avg"
    return None


def _unknown_momentum(name: str) -> str:
    return (
        f"MSAM: cannot tell which state buffer of {name} is its momentum; pass momentum_key='<state key>' "
        "(SGD: 'momentum_buffer', Adam family: 'exp_avg')."
    )


def _momentum_key(base: Optimizer, given: str | None) -> str:
    if given is not None:
        if not isinstance(given, str) or not given:
            raise ValueError(f"MSAM: momentum_key must be a non-empty string, got {given!r}.")
        return given
    key = _known_momentum_key(type(base))
    if key is None:
        raise ValueError(_unknown_momentum(type(base).__name__))
    if key == "momentum_buffer" and any(not group["momentum"] > 0 for group in base.param_groups):
        raise ValueError(_NO_SGD_MOMENTUM)
    return key


class MSAM(SharpnessAwareOptimizer):
    """Momentum-SAM: the gradient is taken at ``w - rho * v / (||v|| + eps)``, ``v`` the base's momentum.

    ONE forward/backward pass per step (the cost of the base optimizer). As in the official code the
    weights wait at the momentum-ascent point between steps: ``step()`` (or ``unperturb`` +
    ``base_step``) restores the true weights ``w`` by copy from a persistent backup, steps the base
    optimizer there with the gradient of the pass just done, and moves to the next ascent point
    ``w' - rho * v' / (||v'|| + eps)`` from the updated momentum ``v'``. The first step (no momentum yet)
    is a plain base step. ``v`` is SGD's ``momentum_buffer`` or the Adam family's ``exp_avg`` (only its
    direction matters); the norm is one global norm over every perturbed parameter that has one.

    Evaluation and saving must see ``w``: use :meth:`true_weights` in a plain loop; monai-sam's MONAI
    engines (``SharpnessAwareIteration``/``SharpnessAwareTrainer``, or
    :class:`~monai_sam.handlers.TrueWeightsHandler` on a plain ``SupervisedTrainer``) keep ``w`` in the
    network outside their iterations, so ``ValidationHandler``, ``CheckpointSaver`` and the sharpness
    handlers see the true weights. :meth:`load_state_dict` assumes the network was loaded with the true
    weights; call :meth:`move_to_perturbed_point` before the next forward pass (the engines do).

    Buffers: one persistent parameter-sized backup of ``w`` (SAM's backup is allocated once as well);
    no gradient copy. Weight decay of the base optimizer applies at the restored ``w``.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance: SGD with
            ``momentum > 0``, Adam, AdamW, NAdam, RAdam, Adamax, or any other with ``momentum_key``.
        rho: distance of the ascent point (>= 0; per group, read when the weights move there). The
            official runs use 3 (CIFAR/ImageNet, SGD and AdamW); the official SGD class default is 0.3.
        momentum_key: the base optimizer's state key of its momentum buffer (None: detected).
        eps: added to the momentum norm (official 1e-12).
        interval: use the ascent point only for every ``interval``-th step (the others are base steps).
        start_step: late-phase mode: steps before this one are plain base steps.
        base_kwargs: keyword arguments of the base optimizer (``lr``, ``momentum``, ...).

    Example::

        opt = MSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
        loss_fn(model(x), y).backward()
        opt.step()  # or opt.step(closure)
        with opt.true_weights():
            evaluate(model)
    """

    passes_per_step = 1
    final_grad_is_last_pass = True
    perturbed_between_steps = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.3,
        *,
        momentum_key: str | None = None,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )
        self.momentum_key = _momentum_key(self.base_optimizer, momentum_key)
        #: when True, a step ends at the true weights and a driver moves to the ascent point before the
        #: next pass (monai-sam's MONAI engines set it: it saves one restore and one ascent per iteration).
        self.rest_at_true_weights = False
        self._ascended: list[Tensor] = []  # parameters now at the ascent point (their w is in the workspace)

    def set_rest_at_true_weights(self, rest: bool) -> None:
        """See :meth:`SharpnessAwareOptimizer.set_rest_at_true_weights`.

        Args:
            rest: end each step at the true weights (True) or at the momentum-ascent point (False).
        """
        self.rest_at_true_weights = bool(rest)

    @classmethod
    def base_problem(
        cls, base: type[Optimizer], base_kwargs: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> str | None:
        """MSAM needs the base's momentum: SGD with ``momentum > 0``, the Adam family, or ``momentum_key``.

        Args:
            base: the optimizer class to wrap.
            base_kwargs: its keyword arguments (an SGD ``momentum`` that is not a number is not judged).
            hyperparameters: MSAM's keyword arguments (``momentum_key``).
        """
        if hyperparameters.get("momentum_key") is not None:
            return None
        key = _known_momentum_key(base)
        if key is None:
            return _unknown_momentum(base.__name__)
        momentum = base_kwargs.get("momentum", 0)
        if key == "momentum_buffer" and isinstance(momentum, (int, float)) and not momentum > 0:
            return _NO_SGD_MOMENTUM
        return None

    # ------------------------------------------------------------------ the ascent point
    def _at_perturbed_point(self) -> bool:
        return bool(self._ascended)

    def _uses_ascent(self, step: int) -> bool:
        offset = step - self.start_step
        return offset >= 0 and offset % self.interval == 0

    @torch.no_grad()
    def move_to_perturbed_point(self) -> None:
        """``w <- w - rho * v / (||v|| + eps)`` from the current momentum, backing ``w`` up by copy.

        Idempotent; no-op before the first step (no momentum), on steps that do not use the ascent
        (``interval``/``start_step``) and for groups with ``rho = 0``. Bit-exact: the same kernels on the
        same ``w`` and ``v`` always give the same point.
        """
        if self._ascended or self._passes.in_step:
            return
        if not self._uses_ascent(self._step_count):
            return
        key = self.momentum_key
        per_group = []
        for group in self.param_groups:
            members = [
                p for p in self._perturbed(group["params"]) if self.state.get(p, {}).get(key) is not None
            ]
            per_group.append((group, members, [self.state[p][key] for p in members]))
        moments = [v for _, _, vs in per_group for v in vs]
        if not moments:
            return
        inv = inverse_norm(global_norm(moments, device=self.last_grad_norm.device), self.eps)
        for group, members, vs in per_group:
            if not members or group["rho"] == 0:
                continue
            saved = [self._weights.buffer(p) for p in members]
            torch._foreach_copy_(saved, members)
            # w += v * (-rho / (||v|| + eps)) with a 0-d device factor: no temporary, no host sync
            factor = (inv * -group["rho"]).to(members[0].device, members[0].dtype)
            torch._foreach_addcmul_(members, vs, [factor] * len(members))
            self._ascended.extend(members)

    @torch.no_grad()
    def move_to_true_weights(self) -> None:
        """Copy the true weights ``w`` back into the parameters (no-op when they hold them already)."""
        if not self._ascended:
            return
        torch._foreach_copy_(self._ascended, [self._weights.workspace[p] for p in self._ascended])
        self._ascended = []

    # ------------------------------------------------------------------ the step
    def _one_pass_step(self, loss: Tensor | None) -> None:
        """The gradient of the pass is in ``.grad``: restore ``w``; the base steps with that gradient."""
        _, grads = self._grads()
        self._record_clean_norm(grads)
        self.move_to_true_weights()

    def base_step(self, scaler: torch.amp.GradScaler | None = None, *, check_finite: bool = True) -> None:
        """Step the base optimizer at ``w``, then move to the next momentum-ascent point.

        Args:
            scaler: an optional GradScaler, as in :meth:`SharpnessAwareOptimizer.base_step`; when it skips
                the step the momentum is unchanged and the weights return to the same ascent point.
            check_finite: as in :meth:`SharpnessAwareOptimizer.base_step` (a refused step leaves the
                parameters at the true weights ``w``).
        """
        super().base_step(scaler, check_finite=check_finite)
        if not self.rest_at_true_weights:
            self.move_to_perturbed_point()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One MSAM step.

        Args:
            closure: optional; computes the loss and calls ``backward()``. Without it the gradients
                already in ``.grad`` (from a pass at the current, ascent, point) are used, like any torch
                optimizer, so MSAM also runs under MONAI's own ``SupervisedTrainer`` iteration.

        Returns:
            the closure's loss, or None.
        """
        if closure is not None:
            return super().step(closure)
        if self._passes.in_step:
            raise RuntimeError(f"{type(self).__name__}.step() called in the middle of a manual step.")
        self.unperturb()
        self.base_step()
        return None

    def end_passes(self) -> None:
        """See :meth:`SharpnessAwareOptimizer.end_passes`; also returns the weights to ``w``."""
        self.move_to_true_weights()
        super().end_passes()

    # ------------------------------------------------------------------ checkpointing
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; the parameters are taken to hold the true weights afterwards.

        Args:
            state_dict: as saved by :meth:`state_dict`.
        """
        self._ascended = []
        super().load_state_dict(state_dict)
