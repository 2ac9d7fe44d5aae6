"""Build any optimizer of monai-sam, or a plain torch optimizer, by name (for configs and bundles)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.asam import ASAM
from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.bsam import BSAM
from monai_sam.optimizers.crsam import CRSAM
from monai_sam.optimizers.detsam import DetSAM
from monai_sam.optimizers.frobsam import FrobSAM
from monai_sam.optimizers.fsam import FSAM
from monai_sam.optimizers.gcsam import GCSAM
from monai_sam.optimizers.gsam import GSAM
from monai_sam.optimizers.looksam import LookSAM
from monai_sam.optimizers.msam import MSAM
from monai_sam.optimizers.sam import SAM
from monai_sam.optimizers.ssam import SSAM
from monai_sam.optimizers.wsam import WSAM

__all__ = ["available_optimizers", "create_optimizer"]

logger = logging.getLogger(__name__)

#: plain torch optimizers, usable as names and as ``base``.
PLAIN_OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

#: sharpness-aware methods by canonical name.
METHODS: dict[str, type[SharpnessAwareOptimizer]] = {
    "sam": SAM,
    "asam": ASAM,
    "gsam": GSAM,
    "wsam": WSAM,
    "crsam": CRSAM,
    "ssam": SSAM,
    "frobsam": FrobSAM,
    "detsam": DetSAM,
    "looksam": LookSAM,
    "msam": MSAM,
    "gcsam": GCSAM,
    "fsam": FSAM,
    "bsam": BSAM,
}

#: options every method takes through the base class (SAM-ON: ``perturb="norm", model=net``).
SHARED_KEYWORDS = frozenset({"perturb", "model"})


def _canonical(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def available_optimizers() -> list[str]:
    """Canonical names accepted by :func:`create_optimizer` (plain ones first)."""
    return [*PLAIN_OPTIMIZERS, *METHODS]


def _keyword_names(cls: type) -> set[str]:
    skip = {"self", "params", "base_optimizer"}
    return {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def _method_only_names() -> set[str]:
    """Hyperparameters of any registered method (may be ignored when another method is chosen)."""
    names: set[str] = set(SHARED_KEYWORDS)
    plain = set().union(*(_keyword_names(c) for c in PLAIN_OPTIMIZERS.values()))
    for cls in METHODS.values():
        own = _keyword_names(cls)
        # bSAM's lr/betas/weight_decay are base-optimizer names: a wrong one must still raise elsewhere.
        names |= own - plain if cls.own_update else own
    return names


def _resolve_base(base: str | type[Optimizer]) -> type[Optimizer]:
    if isinstance(base, str):
        key = _canonical(base)
        if key not in PLAIN_OPTIMIZERS:
            raise ValueError(f"Unknown base optimizer {base!r}; expected one of {sorted(PLAIN_OPTIMIZERS)}.")
        return PLAIN_OPTIMIZERS[key]
    if inspect.isclass(base) and issubclass(base, Optimizer):
        return base
    raise TypeError(f"base must be an optimizer name or class, got {base!r}.")


def create_optimizer(
    name: str,
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    base: str | type[Optimizer] = "adam",
    method_defaults: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Optimizer:
    """Create a sharpness-aware optimizer (or a plain torch one) by name.

    ``kwargs`` are split by signature into the method's hyperparameters and the base optimizer's keyword
    arguments. Hyperparameters that belong to another registered method (``rho`` given with ``name="adam"``,
    ``alpha`` with ``name="sam"``, ...) are ignored with a logged warning, so one config can switch methods
    by name; any other unknown key raises.

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
    key = _canonical(name)
    if key in PLAIN_OPTIMIZERS:
        cls, method_keys = PLAIN_OPTIMIZERS[key], set()
        base_cls = cls
    elif key in METHODS:
        cls = METHODS[key]
        method_keys = _keyword_names(cls) | SHARED_KEYWORDS
        base_cls = _resolve_base(base)
        if cls.own_update:  # bSAM: its own Adam-like update, no base optimizer
            if base_cls is not torch.optim.Adam:
                raise ValueError(
                    f"create_optimizer({name!r}): {cls.__name__} has its own update and takes no base "
                    f"optimizer; got base={base!r} (leave the default)."
                )
            base_cls = None
    else:
        raise ValueError(f"Unknown optimizer name {name!r}; available: {available_optimizers()}.")
    base_keys = _keyword_names(base_cls) if base_cls is not None else set()
    for k, v in (method_defaults or {}).items():
        if kwargs.get(k) is None:
            kwargs.pop(k, None)
            if k in method_keys or k in base_keys:
                kwargs[k] = v
    method_kwargs, base_kwargs, ignored, unknown = {}, {}, [], []
    foreign = _method_only_names()
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
    if cls is base_cls or base_cls is None:
        return cls(params, **method_kwargs, **base_kwargs)
    return cls(params, base_cls, **method_kwargs, **base_kwargs)
