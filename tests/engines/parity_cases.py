"""The MONAI parity matrix: tiny networks, data and trainer options, and the runs compared on them.

Every :class:`Case` is one way MONAI users train: a network, its loss, its batches and the
``SupervisedTrainer`` options that touch ``pred`` (inferer, ``prepare_batch``, decollation,
postprocessing, metrics, accumulation, autocast). :func:`train` runs a case through MONAI's own
``SupervisedTrainer._iteration``, through ``SharpnessAwareIteration`` or through ``SharpnessAwareTrainer``;
:func:`sam_reference` is SAM written out by hand on the same full network output.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import torch
from monai.data import MetaTensor, list_data_collate
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_prepare_batch
from monai.handlers import MeanDice, from_engine
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.networks.nets import Classifier, DynUNet, SegResNetDS, UNet
from monai.transforms import AsDiscreted, Compose
from torch import nn

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer
from monai_sam.optimizers import create_optimizer

LR = 1e-2
MOMENTUM = 0.9
RHO = 0.05
NUM_CLASSES = 3
DEVICE = torch.device("cpu")


# ---------------------------------------------------------------------------------------------- networks
class TwoHeadNet(nn.Module):
    """Returns a dict: a segmentation map and an auxiliary regression map."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3, padding=1)
        self.seg = nn.Conv2d(4, NUM_CLASSES, 1)
        self.aux = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.body(x))
        return {"seg": self.seg(h), "aux": self.aux(h)}


class DictLoss(nn.Module):
    """Dice-CE on ``seg`` plus a small MSE on ``aux``: uses every head of :class:`TwoHeadNet`."""

    def __init__(self) -> None:
        super().__init__()
        self.seg = DiceCELoss(to_onehot_y=True, softmax=True)

    def forward(self, pred: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return self.seg(pred["seg"], target) + 0.1 * nn.functional.mse_loss(pred["aux"], target.float())


class StackedDeepSupervisionLoss(nn.Module):
    """DynUNet's training output ``(B, 1 + deep_supr_num, C, ...)``: unbind the heads, weight them."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(list(torch.unbind(pred, dim=1)), target)


class ShiftScaleClassifier(nn.Module):
    """A classifier that needs the extra ``args``/``kwargs`` of a 4-tuple ``prepare_batch``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Classifier(in_shape=(1, 16, 16), classes=NUM_CLASSES, channels=(4, 8), strides=(2, 2))

    def forward(self, x: torch.Tensor, shift: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        return self.net(x * scale + shift)


def prepare_with_args(batchdata: dict, device=None, non_blocking: bool = False, **kwargs: Any):
    """``prepare_batch`` returning MONAI's 4-tuple ``(inputs, targets, args, kwargs)``."""
    image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    label = batchdata["label"].to(device=device, non_blocking=non_blocking, **kwargs)
    return image, label, (batchdata["shift"].to(device),), {"scale": 0.5}


def _seeded(build: Callable[[], nn.Module], dtype: torch.dtype) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return build().to(dtype)

    return make


# ---------------------------------------------------------------------------------------------- data
def _classification_batches(dtype: torch.dtype, shift: bool = False, num_batches: int = 3) -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(num_batches):
        batch = {
            "image": torch.randn(4, 1, 16, 16, generator=gen, dtype=dtype),
            "label": torch.randint(0, NUM_CLASSES, (4,), generator=gen),
        }
        if shift:
            batch["shift"] = torch.randn(4, 1, 1, 1, generator=gen, dtype=dtype)
        batches.append(batch)
    return batches


def _segmentation_batches(dtype: torch.dtype, dims: int = 3, meta: bool = False, num_batches: int = 3):
    gen = torch.Generator().manual_seed(2)
    shape = (16,) * dims
    batches = []
    for _ in range(num_batches):
        image = torch.randn(2, 1, *shape, generator=gen, dtype=dtype)
        # 3 classes that follow the image; float labels, as DeepSupervisionLoss resizes them
        label = ((image > -0.3).to(dtype) + (image > 0.6).to(dtype)).to(dtype)
        if not meta:
            batches.append({"image": image, "label": label})
            continue
        affine = torch.diag(torch.tensor([1.5, 1.5, 2.0, 1.0], dtype=torch.float64))
        items = [
            {"image": MetaTensor(image[i], affine=affine), "label": MetaTensor(label[i], affine=affine)}
            for i in range(image.shape[0])
        ]
        batches.append(list_data_collate(items))
    return batches


# ---------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One training set-up of the parity matrix.

    Attributes:
        name: test id.
        net: builds the seeded network (the same weights on every call).
        batches: builds the list of batches (the ``train_data_loader``).
        loss: builds the loss function.
        options: builds the ``SupervisedTrainer`` keyword arguments (fresh metrics/transforms per trainer).
        epochs: epochs of every run.
        bf16: bf16 autocast on the CPU: MONAI's ``_iteration`` (``amp=True``, ``amp_kwargs={"dtype":
            torch.bfloat16}``) runs with its ``"cuda"`` autocast mapped to ``"cpu"`` (:func:`cpu_autocast`);
            ours asks for it by name, ``cpu_autocast_dtype=torch.bfloat16`` (``amp`` alone keeps a CPU
            model in fp32, as MONAI does).
        sam_tol: ``(rtol, atol)`` of the SAM-versus-reference comparison.
    """

    name: str
    net: Callable[[], nn.Module]
    batches: Callable[[], list]
    loss: Callable[[], Callable]
    options: Callable[[], dict] = field(default=dict)
    epochs: int = 2
    bf16: bool = False
    sam_tol: tuple[float, float] = (1e-9, 1e-11)


F64 = torch.float64


def _unet() -> nn.Module:
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=NUM_CLASSES,
        channels=(4, 8),
        strides=(2,),
        num_res_units=0,
    )


def _segresnet_ds() -> nn.Module:
    return SegResNetDS(
        spatial_dims=3,
        in_channels=1,
        out_channels=NUM_CLASSES,
        init_filters=4,
        blocks_down=(1, 1, 1),
        dsdepth=3,
    )


def _dynunet() -> nn.Module:
    return DynUNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=NUM_CLASSES,
        kernel_size=[3, 3, 3],
        strides=[1, 2, 2],
        upsample_kernel_size=[2, 2],
        filters=[4, 8, 16],
        deep_supervision=True,
        deep_supr_num=1,
    )


def _classifier() -> nn.Module:
    return Classifier(in_shape=(1, 16, 16), classes=NUM_CLASSES, channels=(4, 8), strides=(2, 2))


def _dice_ce() -> nn.Module:
    return DiceCELoss(to_onehot_y=True, softmax=True)


def _deep_supervision_loss() -> nn.Module:
    return DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))


def _postprocessing_and_metric() -> dict:
    post = Compose([AsDiscreted(keys=["pred", "label"], argmax=(True, False), to_onehot=NUM_CLASSES)])
    metric = {
        "train_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))
    }
    return {"postprocessing": post, "key_train_metric": metric}


CASES = [
    Case(
        "classification_2d",
        _seeded(_classifier, F64),
        lambda: _classification_batches(F64),
        nn.CrossEntropyLoss,
    ),
    Case("unet_dicece_3d", _seeded(_unet, F64), lambda: _segmentation_batches(F64), _dice_ce),
    Case(
        "segresnetds_deep_supervision_list",
        _seeded(_segresnet_ds, F64),
        lambda: _segmentation_batches(F64),
        _deep_supervision_loss,
    ),
    Case(
        "segresnetds_deep_supervision_list_no_decollate",
        _seeded(_segresnet_ds, F64),
        lambda: _segmentation_batches(F64),
        _deep_supervision_loss,
        options=lambda: {"decollate": False},
    ),
    Case(
        "dynunet_deep_supervision_stacked",
        _seeded(_dynunet, F64),
        lambda: _segmentation_batches(F64),
        StackedDeepSupervisionLoss,
        options=lambda: {"decollate": False},
    ),
    Case("dict_output", _seeded(TwoHeadNet, F64), lambda: _segmentation_batches(F64, dims=2), DictLoss),
    Case(
        "prepare_batch_args_kwargs",
        _seeded(ShiftScaleClassifier, F64),
        lambda: _classification_batches(F64, shift=True),
        nn.CrossEntropyLoss,
        options=lambda: {"prepare_batch": prepare_with_args},
    ),
    Case(
        "sliding_window_inferer",
        _seeded(_unet, F64),
        lambda: _segmentation_batches(F64),
        _dice_ce,
        options=lambda: {
            "inferer": SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=4, overlap=0.25),
            "decollate": False,
        },
    ),
    Case("metatensor_inputs", _seeded(_unet, F64), lambda: _segmentation_batches(F64, meta=True), _dice_ce),
    Case(
        "postprocessing_key_train_metric",
        _seeded(_unet, F64),
        lambda: _segmentation_batches(F64),
        _dice_ce,
        options=_postprocessing_and_metric,
    ),
    Case(
        "accumulation_steps_2",
        _seeded(_classifier, F64),
        lambda: _classification_batches(F64, num_batches=5),
        nn.CrossEntropyLoss,
        options=lambda: {"accumulation_steps": 2},
    ),
    Case(
        "bf16_autocast",
        _seeded(_classifier, torch.float32),
        lambda: _classification_batches(torch.float32),
        nn.CrossEntropyLoss,
        options=lambda: {"amp": True, "amp_kwargs": {"dtype": torch.bfloat16}},
        bf16=True,
        sam_tol=(1e-4, 1e-5),
    ),
    # MONAI's own meaning of amp on a CPU device (its autocast is "cuda" only): fp32, bit for bit
    Case(
        "amp_on_cpu",
        _seeded(_classifier, torch.float32),
        lambda: _classification_batches(torch.float32),
        nn.CrossEntropyLoss,
        options=lambda: {"amp": True},
        sam_tol=(1e-5, 1e-6),
    ),
    Case(
        "amp_bf16_kwargs_on_cpu",
        _seeded(_unet, torch.float32),
        lambda: _segmentation_batches(torch.float32),
        _dice_ce,
        options=lambda: {"amp": True, "amp_kwargs": {"dtype": torch.bfloat16}},
        sam_tol=(1e-5, 1e-6),
    ),
]


# ---------------------------------------------------------------------------------------------- runs
@contextlib.contextmanager
def cpu_autocast(enabled: bool):
    """Let MONAI's hard-coded ``torch.autocast("cuda")`` run on the CPU, so its bf16 path can be compared.

    ``SupervisedTrainer._iteration`` opens ``torch.autocast("cuda", **amp_kwargs)``; on a machine without
    CUDA that is disabled with a warning (and ``Trainer.run`` makes a disabled CUDA GradScaler). Mapping
    the device type to ``"cpu"`` runs MONAI's own code under CPU bf16 autocast; ``SharpnessAwareIteration``
    asks for ``"cpu"`` itself (``cpu_autocast_dtype``), so it is unaffected.
    """
    if not enabled:
        yield
        return
    real = torch.autocast

    def on_cpu(device_type: str, *args: Any, **kwargs: Any):
        return real("cpu", *args, **kwargs)

    with mock.patch.object(torch, "autocast", on_cpu), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated/disabled CUDA GradScaler on a CPU machine
        yield


@dataclass
class Result:
    """What one run leaves: the final weights and buffers, per-iteration losses, last output, metrics."""

    state: dict[str, torch.Tensor]
    losses: list[torch.Tensor]
    output: Any
    metrics: dict[str, Any]
    trainer: Any


def _loss(engine: Any) -> torch.Tensor:
    loss = engine.state.output["loss"]  # at LOSS_COMPLETED: the clean pass's tensor, before decollation
    return (loss.as_tensor() if isinstance(loss, MetaTensor) else loss).detach().clone()


def make_optimizer(name: str, net: nn.Module) -> torch.optim.Optimizer:
    """``"torch_adam"``: a raw ``torch.optim.Adam``; ``"adam"``: ``create_optimizer("adam")``; ``"sam"``: SAM.

    SAM's base is SGD with momentum (as :func:`sam_reference`): Adam turns the ~1e-17 gradients of conv
    biases in front of an InstanceNorm into full-size steps, so rounding-level differences between two
    correct SAM implementations would grow without bound, while MONAI parity below is exact anyway.
    """
    if name == "torch_adam":
        return torch.optim.Adam(net.parameters(), lr=LR)
    if name == "adam":
        return create_optimizer("adam", net.parameters(), lr=LR)
    return create_optimizer(name, net.parameters(), base="sgd", lr=LR, momentum=MOMENTUM, rho=RHO)


def train(
    case: Case, runner: str, optimizer: str, iteration: SharpnessAwareIteration | None = None
) -> Result:
    """Run ``case`` and return its :class:`Result`.

    Args:
        case: the set-up.
        runner: ``"monai"`` (stock ``SupervisedTrainer._iteration``), ``"iteration"``
            (``SupervisedTrainer(iteration_update=SharpnessAwareIteration())``) or ``"trainer"``
            (``SharpnessAwareTrainer``).
        optimizer: ``"torch_adam"`` or a :func:`~monai_sam.optimizers.create_optimizer` name.
        iteration: the iteration of the ``"iteration"`` runner (default ``SharpnessAwareIteration()``).
    """
    net = case.net()
    common = {
        "device": DEVICE,
        "max_epochs": case.epochs,
        "train_data_loader": case.batches(),
        "network": net,
        "optimizer": make_optimizer(optimizer, net),
        "loss_function": case.loss(),
        **case.options(),
    }
    ours = {"cpu_autocast_dtype": torch.bfloat16} if case.bf16 else {}
    if runner == "monai":
        trainer = SupervisedTrainer(**common)
    elif runner == "iteration":
        trainer = SupervisedTrainer(iteration_update=iteration or SharpnessAwareIteration(**ours), **common)
    elif runner == "trainer":
        trainer = SharpnessAwareTrainer(**common, **ours)
    else:
        raise ValueError(runner)
    losses: list[torch.Tensor] = []
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: losses.append(_loss(e)))
    with cpu_autocast(case.bf16):
        trainer.run()
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return Result(state, losses, trainer.state.output, dict(trainer.state.metrics), trainer)


def sam_reference(case: Case, rho: float = RHO) -> Result:
    """SAM by hand on the case's full output: clean pass, ascend ``rho * g / ||g||``, perturbed pass, restore.

    Same ``prepare_batch``, inferer, loss (on the whole network output), accumulation windows (MONAI's rule,
    each micro-batch perturbed by its own gradient, final gradients summed) and autocast; BatchNorm running
    statistics come from the clean pass only (the iteration's default ``bn_policy="clean"``). The base
    optimizer is a raw ``torch.optim.SGD`` with momentum.
    """
    net = case.net()
    options = case.options()
    prepare = options.get("prepare_batch", default_prepare_batch)
    inferer = options.get("inferer") or SimpleInferer()
    acc = options.get("accumulation_steps", 1)
    loss_function = case.loss()
    params = list(net.parameters())
    base = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    batches = case.batches()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if case.bf16 else contextlib.nullcontext

    def loss_at(inputs, targets, args, kwargs) -> torch.Tensor:
        with autocast():
            return loss_function(inferer(inputs, net, *args, **kwargs), targets).mean()

    losses = []
    total: list[torch.Tensor] = []
    for _ in range(case.epochs):
        for i, batchdata in enumerate(batches):
            if i % acc == 0:
                total = [torch.zeros_like(p) for p in params]
            batch = prepare(batchdata, DEVICE, False)
            batch = batch if len(batch) == 4 else (*batch, (), {})
            net.train()
            clean = loss_at(*batch)
            grads = torch.autograd.grad(clean / acc, params)
            scale = rho / (torch.sqrt(sum((g * g).sum() for g in grads)) + 1e-12)
            weights = [p.detach().clone() for p in params]
            buffers = [b.detach().clone() for b in net.buffers()]
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.add_(g * scale)
            perturbed = torch.autograd.grad(loss_at(*batch) / acc, params)
            with torch.no_grad():
                for p, w in zip(params, weights):
                    p.copy_(w)
                for b, saved in zip(net.buffers(), buffers):
                    b.copy_(saved)
            total = [t + g for t, g in zip(total, perturbed)]
            loss = clean.detach()
            losses.append((loss.as_tensor() if isinstance(loss, MetaTensor) else loss).clone())
            if (i + 1) % acc == 0 or i + 1 == len(batches):
                for p, t in zip(params, total):
                    p.grad = t
                base.step()
                base.zero_grad(set_to_none=True)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return Result(state, losses, None, {}, None)


# ---------------------------------------------------------------------------------------------- comparison
def differences(a: Any, b: Any, path: str = "output") -> list[str]:
    """Where two nested outputs differ (type, structure, shape, dtype, MetaTensor meta or any bit)."""
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{path}: {tuple(a.shape)}/{a.dtype} != {tuple(b.shape)}/{b.dtype}"]
        out = [] if torch.equal(torch.as_tensor(a), torch.as_tensor(b)) else [f"{path}: values differ"]
        if isinstance(a, MetaTensor):
            out += differences(a.meta, b.meta, f"{path}.meta")
        return out
    if isinstance(a, dict):
        if sorted(a, key=str) != sorted(b, key=str):
            return [f"{path}: keys {sorted(a, key=str)} != {sorted(b, key=str)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}[{k!r}]")]
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    try:
        same = bool(a == b) or (a != a and b != b)  # NaN == NaN here
    except Exception:  # objects without a usable ==: compare their text
        same = repr(a) == repr(b)
    return [] if same else [f"{path}: {a!r} != {b!r}"]


def state_differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """State-dict entries (weights and buffers) that are not bit-identical."""
    return [k for k in a if not torch.equal(a[k], b[k])]
