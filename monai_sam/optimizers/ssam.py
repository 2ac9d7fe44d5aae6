"""SSAM / StableSAM: Tan et al., "Stabilizing Sharpness-aware Minimization Through A Simple Renormalization
Strategy" (JMLR 2025). Not Sparse SAM (Mi et al.), which shares the acronym elsewhere."""

from __future__ import annotations

from torch import Tensor

from monai_sam.optimizers.functional import global_norm, scale_by
from monai_sam.optimizers.sam import SAM

__all__ = ["SSAM"]


class SSAM(SAM):
    """Stable SAM: SAM, then the final gradient is renormalised to the clean gradient's norm.

    ``g = (||g0|| / (||gp|| + eps)) * gp`` with one global scalar for all groups, kept on the device
    (the official code reads ``||g0||`` with ``.item()``, a host sync). Two passes, one peak buffer.
    Same constructor as :class:`SAM`.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0).
        eps: added to the norms.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    # Not SAM's DDP shortcut (only the last pass all-reduced): the final gradient is gp rescaled by a
    # ratio of norms, so it is combined on each rank first and then averaged once.
    final_grad_is_last_pass = False

    def _combine(self, loss: Tensor | None) -> None:
        _, grads = self._grads()
        perturbed_norm = global_norm(grads, device=self._clean_norm.device)
        # max(norm, eps) rather than norm + eps: the ratio is exactly 1 when gp == g0 (rho = 0).
        ratio = self._clean_norm.to(perturbed_norm.dtype) / perturbed_norm.clamp_min(self.eps)
        scale_by(grads, ratio, inplace=True)
