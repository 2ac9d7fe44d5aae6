"""Wrap an optimizer described in a config, exactly as described, into a sharpness-aware method.

:func:`wrap_optimizer` is what ``monai-sam overlay`` puts in place of a bundle's optimizer: the bundle's
own keys (``params``, ``lr``, ``weight_decay``, param groups, ...) stay where they are and are passed,
untouched, to the bundle's own optimizer class; only the ``sam_*`` keys are added.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.factory import METHODS, _canonical, _keyword_names

__all__ = ["wrap_optimizer"]


def wrap_optimizer(
    sam_method: str,
    sam_base: type[Optimizer],
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    sam_hyperparameters: dict[str, Any] | None = None,
    **base_kwargs: Any,
) -> SharpnessAwareOptimizer:
    """Build ``sam_base(params, **base_kwargs)`` unchanged and wrap it into the method ``sam_method``.

    The base optimizer is constructed exactly as the bundle would construct it, so its class, learning
    rate, weight decay, param groups and every other argument are the bundle's; the method shares its
    param groups and state, so an LR scheduler built on the returned optimizer drives the base.
    The method's hyperparameters come only from ``sam_hyperparameters``: a base argument that shares a
    name with one of them (Adam's ``eps`` and the method's ``eps``) keeps going to the base.

    Args:
        sam_method: a sharpness-aware method name of :func:`~monai_sam.optimizers.available_optimizers`
            (``"sam"``, ``"asam"``, ``"gsam"``, ...; case, ``-`` and ``_`` are ignored).
        sam_base: the bundle's optimizer class (for example ``torch.optim.Adam`` or MONAI's ``Novograd``).
        params: the bundle's ``params``: parameters or param-group dicts.
        sam_hyperparameters: the method's keyword arguments, e.g. ``{"rho": 0.05}``.
        base_kwargs: the bundle's other optimizer arguments (``lr``, ``weight_decay``, ...).

    Raises:
        ValueError: ``sam_method`` is not a sharpness-aware method, or a hyperparameter it does not take.
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
    if not isinstance(sam_method, str) or _canonical(sam_method) not in METHODS:
        raise ValueError(
            f"wrap_optimizer: sam_method={sam_method!r} is not a sharpness-aware method; "
            f"expected one of {sorted(METHODS)}."
        )
    cls = METHODS[_canonical(sam_method)]
    if not (inspect.isclass(sam_base) and issubclass(sam_base, Optimizer)):
        raise TypeError(f"wrap_optimizer: sam_base must be a torch.optim.Optimizer class, got {sam_base!r}.")
    if issubclass(sam_base, SharpnessAwareOptimizer):
        raise ValueError(
            f"wrap_optimizer: sam_base {sam_base.__name__} is already sharpness-aware; wrap its base instead."
        )
    hyper = dict(sam_hyperparameters or {})
    unknown = sorted(set(hyper) - _keyword_names(cls))
    if unknown:
        raise ValueError(
            f"wrap_optimizer: {cls.__name__} does not take {unknown} in sam_hyperparameters; "
            f"it accepts {sorted(_keyword_names(cls))}."
        )
    base = sam_base(params, **base_kwargs)
    return cls(base.param_groups, base, **hyper)
