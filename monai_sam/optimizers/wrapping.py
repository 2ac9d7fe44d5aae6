"""Wrap an optimizer described in a config, exactly as described, into a sharpness-aware method.

:func:`wrap_optimizer` is what ``monai-sam overlay`` puts in place of a bundle's optimizer: the bundle's
own keys (``params``, ``lr``, ``weight_decay``, param groups, ...) stay where they are and are passed,
untouched, to the bundle's own optimizer class; only the ``sam_*`` keys are added. ``sam_method="none"``
returns that optimizer unwrapped, so one overlaid config also runs the bundle's own training.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.registry import METHOD_REGISTRY, PLAIN_OPTIMIZERS, canonical_name, find_method

__all__ = ["KEEP_BASE", "wrap_optimizer", "wrapping_problem"]

#: the ``sam_method`` that keeps the bundle's own optimizer, unwrapped (a plain name does too when it names
#: the bundle's class): the A/B switch of an overlaid bundle, ``--sam_optimizer none``.
KEEP_BASE = "none"


def wrapping_problem(
    sam_method: Any,
    sam_base: type[Optimizer] | None,
    base_kwargs: dict[str, Any] | None = None,
    sam_hyperparameters: dict[str, Any] | None = None,
) -> str | None:
    """Why :func:`wrap_optimizer` would refuse ``sam_method`` over ``sam_base``; None when it would not.

    Checked before anything is built: ``monai-sam overlay`` asks it when the overlay is written (with
    ``sam_base=None`` when the bundle's optimizer class cannot be imported there; the run checks again).

    Args:
        sam_method: a sharpness-aware method, ``"none"`` or a plain name (``"adam"``, ``"adamw"``, ``"sgd"``).
        sam_base: the optimizer class to wrap, or None when unknown.
        base_kwargs: its keyword arguments as far as known.
        sam_hyperparameters: the method's keyword arguments.
    """
    key = canonical_name(sam_method) if isinstance(sam_method, str) else None
    if key == KEEP_BASE:
        return None
    if key is not None and key in PLAIN_OPTIMIZERS:
        wanted = PLAIN_OPTIMIZERS[key]
        if sam_base is None or sam_base is wanted:
            return None
        return (
            f"{sam_method!r} keeps the optimizer as it is only when it is {wanted.__name__}, but it is "
            f"{sam_base.__name__}; use {KEEP_BASE!r} for the optimizer as it is."
        )
    info = find_method(sam_method) if isinstance(sam_method, str) else None
    if info is None:
        return (
            f"{sam_method!r} is not a sharpness-aware method ({sorted(i.name for i in METHOD_REGISTRY)}), "
            "nor the optimizer as it "
            f"is ({KEEP_BASE!r}, or its name: {sorted(PLAIN_OPTIMIZERS)})."
        )
    cls = info.cls
    hyper = dict(sam_hyperparameters or {})
    accepted = info.keywords
    unknown = sorted(set(hyper) - accepted)
    if unknown:
        return (
            f"{cls.__name__} does not take {unknown} in sam_hyperparameters; it accepts {sorted(accepted)}."
        )
    if sam_base is None:
        return None
    return cls.base_problem(sam_base, dict(base_kwargs or {}), hyper)


def wrap_optimizer(
    sam_method: str,
    sam_base: type[Optimizer],
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    sam_hyperparameters: dict[str, Any] | None = None,
    **base_kwargs: Any,
) -> Optimizer:
    """Build ``sam_base(params, **base_kwargs)`` unchanged and wrap it into the method ``sam_method``.

    The base optimizer is constructed exactly as the bundle would construct it, so its class, learning
    rate, weight decay, param groups and every other argument are the bundle's; the method shares its
    param groups and state, so an LR scheduler built on the returned optimizer drives the base.
    The method's hyperparameters come only from ``sam_hyperparameters``: a base argument that shares a
    name with one of them (Adam's ``eps`` and the method's ``eps``) keeps going to the base.

    ``sam_method="none"`` (or the plain name of ``sam_base``'s class: ``"adam"`` for ``torch.optim.Adam``)
    returns that base optimizer itself, unwrapped: the bundle's own training, bit for bit, from the same
    config (the A/B switch of ``monai-sam overlay``; ``sam_hyperparameters`` is then unused).

    Args:
        sam_method: a sharpness-aware method name of :func:`~monai_sam.optimizers.available_optimizers`
            (``"sam"``, ``"asam"``, ``"gsam"``, ...; case, ``-`` and ``_`` are ignored), or ``"none"``.
        sam_base: the bundle's optimizer class (for example ``torch.optim.Adam`` or MONAI's ``Novograd``).
        params: the bundle's ``params``: parameters or param-group dicts.
        sam_hyperparameters: the method's keyword arguments, e.g. ``{"rho": 0.05}``.
        base_kwargs: the bundle's other optimizer arguments (``lr``, ``weight_decay``, ...).

    Raises:
        ValueError: what :func:`wrapping_problem` finds: an unknown name, a plain name that is not
            ``sam_base``'s class, bSAM (its own update replaces the optimizer), MSAM over an optimizer
            without a known momentum buffer, a hyperparameter the method does not take.
        TypeError: ``sam_base`` is not an optimizer class.

    Example (config)::

        optimizer:
          _target_: monai_sam.optimizers.wrap_optimizer
          sam_method: sam
          sam_base: {_target_: torch.optim.Adam, _mode_: callable}
          sam_hyperparameters: {rho: 0.05}
          params: $@network.parameters()
          lr: 1.0e-4
    """
    if not (inspect.isclass(sam_base) and issubclass(sam_base, Optimizer)):
        raise TypeError(f"wrap_optimizer: sam_base must be a torch.optim.Optimizer class, got {sam_base!r}.")
    if issubclass(sam_base, SharpnessAwareOptimizer):
        raise ValueError(
            f"wrap_optimizer: sam_base {sam_base.__name__} is already sharpness-aware; wrap its base instead."
        )
    problem = wrapping_problem(sam_method, sam_base, base_kwargs, sam_hyperparameters)
    if problem is not None:
        raise ValueError(f"wrap_optimizer: sam_method={sam_method!r}: {problem}")
    base = sam_base(params, **base_kwargs)
    info = find_method(sam_method)
    if info is None:  # "none" or the base's own name: the optimizer as it is
        return base
    return info.cls(base.param_groups, base, **dict(sam_hyperparameters or {}))
