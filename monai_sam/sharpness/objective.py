"""The measured loss: a model, a fixed set of batches and a loss function.

Every sharpness measure evaluates one deterministic function of the weights,

    L(w) = sum_b n_b * loss_fn(forward_fn(model, x_b), y_b) / sum_b n_b,

the sample-weighted mean of the batch-mean losses over the first ``max_batches`` batches. The batches
are read once and cached, so shuffling or random augmentation in a data loader cannot make two
evaluations of L differ; the global RNG is reseeded before each batch's forward, so dropout (train
mode) draws the same masks at every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from monai_sam.sharpness.model_state import ModelStateGuard
from monai_sam.sharpness.vectors import Vector, dot

PrepareBatch = Callable[[Any, torch.device], tuple[Tensor, Tensor]]
ForwardFn = Callable[[nn.Module, Tensor], Any]
LossFn = Callable[[Any, Tensor], Tensor]

MODES = ("eval", "train")


class ObjectiveOptions(TypedDict, total=False):
    """Options shared by every measure (all keyword-only, all optional).

    Keys:
        max_batches: how many batches of a data loader to use (``None``: all); default 8.
        mode: ``"eval"`` (default: BatchNorm uses its running statistics, dropout off) or ``"train"``
            (BatchNorm uses batch statistics, dropout on with masks fixed per batch; running statistics
            are restored afterwards, so measuring never changes the model).
        params: the parameters to measure over (default: those with ``requires_grad``).
        device: where batches go; must be the model's device (default: the model's device).
        forward_fn: ``forward_fn(model, inputs) -> logits``; default calls the model and, when it
            returns a tuple or list (MONAI ``ViT`` returns ``(logits, hidden_states)``), keeps item 0.
        prepare_batch: ``prepare_batch(batch, device) -> (inputs, targets)``; default reads
            ``{"image", "label"}`` dicts and ``(inputs, targets, ...)`` tuples.
        seed: seed of the CPU generator for random directions and probes, and of per-batch RNG.
        progress: show a tqdm progress bar (default True).
    """

    max_batches: int | None
    mode: str
    params: Iterable[nn.Parameter] | None
    device: str | torch.device | None
    forward_fn: ForwardFn | None
    prepare_batch: PrepareBatch | None
    seed: int
    progress: bool


def _plain(x: Any) -> Any:
    # MONAI MetaTensor carries metadata through every op; plain tensors keep double backward lean.
    as_tensor = getattr(x, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else x


def default_prepare_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    """Split a batch into ``(inputs, targets)`` on ``device``.

    Args:
        batch: a dict with ``"image"`` and ``"label"`` keys (MONAI dictionary transforms) or a
            tuple/list whose first two items are inputs and targets.
        device: target device.
    """
    if isinstance(batch, Mapping):
        missing = [k for k in ("image", "label") if k not in batch]
        if missing:
            raise KeyError(f"batch dict has no key(s) {missing} (keys: {sorted(batch)}); pass prepare_batch=")
        inputs, targets = batch["image"], batch["label"]
    elif isinstance(batch, Sequence) and len(batch) >= 2:
        inputs, targets = batch[0], batch[1]
    else:
        raise TypeError(
            f"cannot read a batch of type {type(batch).__name__}: expected a dict with 'image' and "
            "'label' or an (inputs, targets) tuple; pass prepare_batch="
        )
    return _plain(inputs).to(device), _plain(targets).to(device)


def default_forward(model: nn.Module, inputs: Tensor) -> Any:
    """Call ``model(inputs)``; keep item 0 of a tuple/list output (MONAI ViT's logits)."""
    out = model(inputs)
    return out[0] if isinstance(out, (tuple, list)) else out


def is_single_batch(data: Any) -> bool:
    """True for one batch (a dict, or a tuple/list starting with a tensor), False for a loader."""
    if isinstance(data, Mapping):
        return True
    return isinstance(data, (tuple, list)) and len(data) >= 2 and isinstance(data[0], Tensor)


def _select_params(model: nn.Module, params: Iterable[nn.Parameter] | None) -> list[nn.Parameter]:
    if params is None:
        selected = [p for p in model.parameters() if p.requires_grad]
        if not selected:
            raise ValueError("model has no parameter with requires_grad=True; pass params=")
        return selected
    selected = list(params)
    own = {id(p) for p in model.parameters()}
    if not selected or any(id(p) not in own for p in selected):
        raise ValueError("params must be a non-empty iterable of the model's own parameters")
    return selected


class LossObjective:
    """L(w) on cached batches, with its gradient, Hessian-vector products and safe weight moves.

    Use it as a context manager: on entry the model is put in the requested mode and the selected
    parameters get ``requires_grad``; on exit everything is restored bit-exactly (see
    :class:`ModelStateGuard`). Gradients are taken with ``torch.autograd.grad``, so ``.grad`` fields
    are never touched.

    Args:
        model: the network (already on its device).
        data: a data loader (any iterable of batches) or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean scalar loss.
        **options: see :class:`ObjectiveOptions`.
    """

    def __init__(self, model: nn.Module, data: Any, loss_fn: LossFn, **options: Any) -> None:
        unknown = set(options) - set(ObjectiveOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}")
        self.mode = options.get("mode", "eval")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.params = _select_params(model, options.get("params"))
        self.device = self._device(options.get("device"))
        self.forward_fn = options.get("forward_fn") or default_forward
        self.seed = int(options.get("seed", 0))
        self.progress = bool(options.get("progress", True))
        prepare = options.get("prepare_batch") or default_prepare_batch
        self.batches = self._collect(data, options.get("max_batches", 8), prepare)
        sizes = torch.tensor([float(x.shape[0]) for x, _ in self.batches], dtype=torch.float64)
        self.weights = (sizes / sizes.sum()).tolist()
        self._active = list(enumerate(self.weights))
        self.forward_passes = 0
        self.backward_passes = 0

    def _device(self, device: str | torch.device | None) -> torch.device:
        own = self.params[0].device
        if device is not None and torch.device(device) != own:
            raise ValueError(f"device={device!r} differs from the model's device {own}; move the model")
        return own

    def _collect(self, data: Any, max_batches: int | None, prepare: PrepareBatch) -> list:
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        if is_single_batch(data):
            return [prepare(data, self.device)]
        batches = []
        for batch in data:
            if max_batches is not None and len(batches) >= max_batches:
                break
            batches.append(prepare(batch, self.device))
        if not batches:
            raise ValueError("data yielded no batch")
        return batches

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with ``seed``."""
        return torch.Generator().manual_seed(self.seed)

    def __enter__(self) -> LossObjective:
        self._guard = ModelStateGuard(self.model).__enter__()
        self.model.train(self.mode == "train")
        for p in self.params:
            p.requires_grad_(True)
        self.base = [p.detach().clone() for p in self.params]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._guard.__exit__(exc_type, exc, tb)

    @contextmanager
    def only_batch(self, index: int) -> Iterator[None]:
        """Inside the block, L is the loss on batch ``index`` alone (for per-batch m-sharpness)."""
        saved, self._active = self._active, [(index, 1.0)]
        try:
            yield
        finally:
            self._active = saved

    def set_offset(self, delta: Vector | None) -> None:
        """Set the weights to ``w + delta`` (``None``: back to ``w``), by copying from the saved ``w``."""
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.base)
            if delta is not None:
                torch._foreach_add_(self.params, delta)

    def _batch_loss(self, index: int) -> Tensor:
        torch.manual_seed(self.seed + index)  # same dropout masks at every evaluation of L
        inputs, targets = self.batches[index]
        loss = self.loss_fn(self.forward_fn(self.model, inputs), targets)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar tensor (use reduction='mean')")
        self.forward_passes += 1
        return loss

    def loss(self) -> float:
        """L at the current weights (forward passes only)."""
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for i, weight in self._active:
                total += weight * self._batch_loss(i).double()
        return float(total)

    def _grads(self, loss: Tensor, create_graph: bool = False) -> list[Tensor | None]:
        self.backward_passes += 1
        return list(torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True))

    def loss_and_grad(self) -> tuple[float, Vector]:
        """L and its gradient at the current weights."""
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        grad = [torch.zeros_like(p) for p in self.params]
        with torch.enable_grad():
            for i, weight in self._active:
                loss = self._batch_loss(i)
                for acc, g in zip(grad, self._grads(loss)):
                    if g is not None:
                        acc.add_(g, alpha=weight)
                total += weight * loss.detach().double()
        return float(total), grad

    def hvp(self, vector: Vector) -> Vector:
        """Hessian-vector product H(w) v by double backward, summed over the batches."""
        out = [torch.zeros_like(p) for p in self.params]
        with torch.enable_grad():
            for i, weight in self._active:
                grads = self._grads(self._batch_loss(i), create_graph=True)
                used = [(g, v) for g, v in zip(grads, vector) if g is not None]
                gv = dot([g for g, _ in used], [v for _, v in used]) if used else None
                if gv is None or not gv.requires_grad:
                    continue  # the gradient does not depend on w here: this batch's Hessian is zero
                for acc, h in zip(out, self._grads(gv)):
                    if h is not None:
                        acc.add_(h, alpha=weight)
        return out
