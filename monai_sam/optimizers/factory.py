"""Build any optimizer of monai-sam, or a plain torch optimizer, by name (for configs and bundles)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.registry import (
    METHOD_REGISTRY,
    PLAIN_OPTIMIZERS,
    SHARED_KEYWORDS,
    MethodInfo,
    canonical_name,
    find_method,
)

__all__ = ["available_optimizers", "create_optimizer"]

logger = logging.getLogger(__name__)

#: sharpness-aware methods by canonical name (a view of :data:`~monai_sam.optimizers.METHOD_REGISTRY`).
METHODS: Mapping[str, type[SharpnessAwareOptimizer]] = MappingProxyType(
    {info.name: info.cls for info in METHOD_REGISTRY}
)


def available_optimizers() -> list[str]:
    """Canonical names accepted by :func:`create_optimizer` (plain ones first)."""
    return [*PLAIN_OPTIMIZERS, *(info.name for info in METHOD_REGISTRY)]


def _base_keywords(cls: type[Optimizer] | None) -> frozenset[str]:
    """The named keywords of a base optimizer's constructor.

    Base optimizers are any ``torch.optim.Optimizer`` class (a bundle's own included), so they are read
    from their signature; monai-sam's methods declare theirs in the registry.
    """
    if cls is None:
        return frozenset()
    skip = {"self", "params", "base_optimizer"}
    return frozenset(
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    )


def _foreign_keywords() -> frozenset[str]:
    """Keywords of any registered method (ignored with a warning when another method is chosen)."""
    plain = frozenset().union(*(_base_keywords(c) for c in PLAIN_OPTIMIZERS.values()))
    names = set(SHARED_KEYWORDS)
    for info in METHOD_REGISTRY:
        # bSAM's lr/betas/weight_decay are base-optimizer names: a wrong one must still raise elsewhere.
        names |= info.keywords if info.needs_base_optimizer else info.keywords - plain
    return frozenset(names)


def _resolve_base(base: str | type[Optimizer]) -> type[Optimizer]:
    if isinstance(base, str):
        key = canonical_name(base)
        if key not in PLAIN_OPTIMIZERS:
            raise ValueError(f"Unknown base optimizer {base!r}; expected one of {sorted(PLAIN_OPTIMIZERS)}.")
        return PLAIN_OPTIMIZERS[key]
    if inspect.isclass(base) and issubclass(base, Optimizer):
        return base
    raise TypeError(f"base must be an optimizer name or class, got {base!r}.")


def _resolve(
    name: str, base: str | type[Optimizer]
) -> tuple[type[Optimizer], frozenset[str], type[Optimizer] | None]:
    """(class to build, its own keywords, base optimizer class or None) for the optimizer ``name``."""
    key = canonical_name(name)
    if key in PLAIN_OPTIMIZERS:
        return PLAIN_OPTIMIZERS[key], frozenset(), PLAIN_OPTIMIZERS[key]
    info: MethodInfo | None = find_method(name)
    if info is None:
        raise ValueError(f"Unknown optimizer name {name!r}; available: {available_optimizers()}.")
    base_cls = _resolve_base(base)
    if info.needs_base_optimizer:
        return info.cls, info.accepted_keywords, base_cls
    if base_cls is not torch.optim.Adam:  # bSAM: its own Adam-like update, no base optimizer
        raise ValueError(
            f"create_optimizer({name!r}): {info.cls.__name__} has its own update and takes no base "
            f"optimizer; got base={base!r} (leave the default)."
        )
    return info.cls, info.accepted_keywords, None


def create_optimizer(
    name: str,
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    base: str | type[Optimizer] = "adam",
    method_defaults: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Optimizer:
    """Create a sharpness-aware optimizer (or a plain torch one) by name.

    ``kwargs`` are split into the method's keywords (declared in its registry record) and the base
    optimizer's keyword arguments (read from the base class's signature). Hyperparameters that belong to
    another registered method (``rho`` given with ``name="adam"``, ``alpha`` with ``name="sam"``, ...) are
    ignored with a logged warning, so one config can switch methods by name; any other unknown key raises.

    Args:
        name: one of :func:`available_optimizers` (case-insensitive; ``-`` and ``_`` are ignored, so
            ``"CR-SAM"``, ``"cr_sam"`` and ``"crsam"`` are the same).
        params: parameters or param-group dicts.
        base: base optimizer of a sharpness-aware method: ``"sgd"``, ``"adam"``, ``"adamw"`` or a class.
            Ignored for plain names.
        method_defaults: a config's defaults for whichever method it names, e.g. ``{"rho": 0.05}``:
            each is used when ``kwargs`` does not give that key (or gives None) and the method accepts
            it, and is silently left out otherwise, so a plain optimizer logs no warning about a
            default it was never asked to use. A value given in ``kwargs`` is handled as above.
        kwargs: method hyperparameters and base-optimizer keyword arguments, e.g. ``lr=1e-4, rho=0.05``;
            every method also takes ``perturb="norm", model=net`` (SAM-ON).

    Raises:
        ValueError: unknown name, unknown base, or a keyword argument nobody accepts.

    Example::

        opt = create_optimizer("sam", model.parameters(), base="adam", lr=1e-4, rho=0.05)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}.")
    cls, method_keys, base_cls = _resolve(name, base)
    base_keys = _base_keywords(base_cls)
    for k, v in (method_defaults or {}).items():
        if kwargs.get(k) is None:
            kwargs.pop(k, None)
            if k in method_keys or k in base_keys:
                kwargs[k] = v
    method_kwargs, base_kwargs, ignored, unknown = {}, {}, [], []
    foreign = _foreign_keywords()
    for k, v in kwargs.items():
        if k in method_keys:
            method_kwargs[k] = v
        elif k in base_keys:
            base_kwargs[k] = v
        elif k in foreign:
            ignored.append(k)
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(
            f"create_optimizer({name!r}): unknown keyword argument(s) {sorted(unknown)}; "
            f"{cls.__name__} accepts {sorted(method_keys)}"
            + (f", base {base_cls.__name__} accepts {sorted(base_keys)}." if base_cls is not None else ".")
        )
    if ignored:
        logger.warning(
            "create_optimizer(%r): ignoring %s, not used by %s.", name, sorted(ignored), cls.__name__
        )
    build: Callable[..., Optimizer] = cls  # a method's constructor takes the base class second
    if cls is base_cls or base_cls is None:
        return build(params, **method_kwargs, **base_kwargs)
    return build(params, base_cls, **method_kwargs, **base_kwargs)
