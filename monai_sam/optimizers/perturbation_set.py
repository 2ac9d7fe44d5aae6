"""Which parameters a sharpness-aware step perturbs: all of them, or only the normalisation layers (SAM-ON).

SAM-ON (Mueller et al., "Normalization Layers Are All That Sharpness-Aware Minimization Needs", NeurIPS
2023) perturbs only the affine parameters of the normalisation layers and leaves every other weight at
``w``; the perturbation's norm is taken over that subset, and all parameters are then updated with the
gradient at the perturbed point. The official code picks parameters whose *name* contains ``"norm"`` or
``"bn"``; here layers are chosen by *type*, which does not depend on how a network names its children.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["NORM_LAYER_TYPES", "PERTURB_OPTIONS", "is_norm_layer", "norm_parameters", "perturbed_param_ids"]

#: ``perturb`` values every method accepts.
PERTURB_OPTIONS = ("all", "norm")

#: normalisation layers whose weights and biases SAM-ON perturbs. ``_NormBase`` covers BatchNorm{1,2,3}d,
#: SyncBatchNorm, the lazy variants and InstanceNorm{1,2,3}d; MONAI's ``Norm`` factory returns these torch
#: classes (or subclasses, e.g. MAISI's GroupNorm), so ``Norm[...]`` layers are found too.
NORM_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)

#: normalisation layers known by class name only (optional packages: apex's fused InstanceNorm, which
#: MONAI's ``Norm["instance_nvfuser"]`` returns when apex is installed).
_NORM_CLASS_NAMES = frozenset({"InstanceNorm3dNVFuser"})


def is_norm_layer(module: nn.Module) -> bool:
    """True for BatchNorm, GroupNorm, LayerNorm, InstanceNorm, RMSNorm and MONAI's wrappers of them.

    Args:
        module: any module.
    """
    return isinstance(module, NORM_LAYER_TYPES) or type(module).__name__ in _NORM_CLASS_NAMES


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters (weights and biases) of every normalisation layer in ``model``, in module order.

    Args:
        model: the network (a ``DistributedDataParallel`` or compiled wrapper is fine: its children are
            searched).
    """
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if is_norm_layer(module):
            for p in module.parameters(recurse=False):
                found.setdefault(id(p), p)
    return list(found.values())


def perturbed_param_ids(
    perturb: str, model: Any, params: list[Tensor], owner: str
) -> tuple[frozenset[int] | None, tuple[Tensor, ...]]:
    """Resolve the ``perturb``/``model`` options of an optimizer over ``params``.

    Args:
        perturb: ``"all"`` or ``"norm"``.
        model: the network, required by ``"norm"`` (ignored by ``"all"``).
        params: every parameter the optimizer owns.
        owner: the optimizer's class name, for error messages.

    Returns:
        (ids of the perturbed parameters, or None for all of them; the chosen tensors, kept alive so their
        ids stay valid).

    Raises:
        ValueError: unknown ``perturb``; ``"norm"`` without a model, on a model without normalisation
            layers, or when none of their parameters is one of the optimizer's.
    """
    if perturb not in PERTURB_OPTIONS:
        raise ValueError(f"{owner}: invalid perturb={perturb!r}; expected one of {list(PERTURB_OPTIONS)}.")
    if perturb == "all":
        return None, ()
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"{owner}(perturb='norm') needs model=<the network> to find its normalisation layers "
            f"(optimizers only see tensors); got model={type(model).__name__}."
        )
    chosen = norm_parameters(model)
    if not chosen:
        raise ValueError(
            f"{owner}(perturb='norm'): {type(model).__name__} has no normalisation layer with parameters "
            "(looked for BatchNorm, GroupNorm, LayerNorm, InstanceNorm(affine=True), RMSNorm); use "
            "perturb='all'."
        )
    owned = {id(p) for p in params}
    chosen = [p for p in chosen if id(p) in owned and p.requires_grad]
    if not chosen:
        raise ValueError(
            f"{owner}(perturb='norm'): none of the normalisation parameters of {type(model).__name__} is "
            "a trainable parameter of this optimizer (pass the same network's parameters, or unfreeze them)."
        )
    return frozenset(id(p) for p in chosen), tuple(chosen)
