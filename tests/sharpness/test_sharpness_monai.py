"""All measures on MONAI networks: the model comes back bit-identical; loader and batch agree."""

import pytest
import torch
from monai.networks.nets import DenseNet121, ViT
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from monai_sam.sharpness import (
    adaptive_sharpness,
    hessian_top_eigenvalue,
    hessian_trace,
    loss_landscape_1d,
    loss_landscape_2d,
    sam_sharpness,
    worst_case_sharpness,
)

LOSS = nn.CrossEntropyLoss()
CHEAP = [
    (hessian_top_eigenvalue, {"iters": 2}),
    (hessian_trace, {"probes": 1}),
    (worst_case_sharpness, {"steps": 1, "random_starts": 1, "norm": "linf"}),
    (adaptive_sharpness, {"steps": 1, "random_starts": 0}),
    (sam_sharpness, {}),
    (loss_landscape_1d, {"points": 2}),
    (loss_landscape_2d, {"points": 2}),
]


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key  # bit-exact
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(after["grad"], before["grad"]))
    assert torch.equal(after["rng"], before["rng"])


@pytest.fixture(scope="module")
def densenet():
    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=4)
    net.train()
    net(torch.randn(4, 1, 32, 32))  # give BatchNorm non-trivial running statistics
    return net


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_densenet_all_measures_leave_model_unchanged(densenet, mode):
    densenet.train()
    densenet.features.conv0.weight.requires_grad_(False)  # a frozen layer must stay frozen
    densenet.class_layers.eval()  # mixed training flags must come back as they were
    densenet.class_layers.out.weight.grad = torch.ones_like(densenet.class_layers.out.weight)
    batch = {"image": torch.randn(4, 1, 32, 32), "label": torch.randint(0, 3, (4,))}
    before = snapshot(densenet)
    for measure, kwargs in CHEAP:
        result = measure(densenet, batch, LOSS, mode=mode, progress=False, **kwargs)
        assert result is not None
        assert_unchanged(densenet, before)
    everything = list(densenet.parameters())  # includes the frozen layer: unfrozen while measuring only
    sam_sharpness(densenet, batch, LOSS, mode=mode, params=everything, progress=False)
    assert_unchanged(densenet, before)
    densenet.features.conv0.weight.requires_grad_(True)
    densenet.class_layers.out.weight.grad = None


def test_train_mode_uses_batch_statistics(densenet):
    batch = {"image": torch.randn(4, 1, 32, 32) * 3 + 1, "label": torch.randint(0, 3, (4,))}
    eval_loss = sam_sharpness(densenet, batch, LOSS, mode="eval", progress=False).loss
    train_loss = sam_sharpness(densenet, batch, LOSS, mode="train", progress=False).loss
    densenet.eval()
    with torch.no_grad():
        assert eval_loss == pytest.approx(float(LOSS(densenet(batch["image"]), batch["label"])), rel=1e-5)
    assert abs(eval_loss - train_loss) > 1e-3


def test_vit_tuple_output():
    torch.manual_seed(0)
    vit = ViT(
        in_channels=1,
        img_size=(16, 16),
        patch_size=(8, 8),
        hidden_size=16,
        mlp_dim=32,
        num_layers=1,
        num_heads=2,
        classification=True,
        num_classes=3,
        spatial_dims=2,
        dropout_rate=0.1,
    )
    batch = (torch.randn(4, 1, 16, 16), torch.randint(0, 3, (4,)))
    before = snapshot(vit)
    for mode in ("eval", "train"):
        for measure, kwargs in CHEAP:
            assert measure(vit, batch, LOSS, mode=mode, progress=False, **kwargs) is not None
    assert_unchanged(vit, before)
    # train mode: dropout masks are fixed per batch, so L is a deterministic function of w
    one = sam_sharpness(vit, batch, LOSS, mode="train", progress=False)
    two = sam_sharpness(vit, batch, LOSS, mode="train", progress=False)
    assert one == two
    zero = [torch.zeros_like(p) for p in vit.parameters()]
    flat = loss_landscape_1d(vit, batch, LOSS, points=3, direction=zero, mode="train", progress=False)
    assert flat.losses[0] == flat.losses[1] == flat.losses[2]  # same masks at every evaluation
    custom = sam_sharpness(vit, batch, LOSS, forward_fn=lambda m, x: m(x)[0], progress=False)
    assert custom == sam_sharpness(vit, batch, LOSS, progress=False)


def test_loader_matches_single_batch():
    torch.manual_seed(0)
    net = nn.Sequential(  # small, so the three measures x three data forms stay cheap
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    net(torch.randn(6, 1, 16, 16))  # non-trivial BatchNorm running statistics for eval mode
    images, labels = torch.randn(6, 1, 16, 16), torch.randint(0, 3, (6,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)  # batches of 4 and 2: weights matter
    dict_loader = [{"image": images[:4], "label": labels[:4]}, {"image": images[4:], "label": labels[4:]}]
    whole = (images, labels)
    kwargs = {"progress": False, "seed": 3}
    for measure, extra in (
        (sam_sharpness, {}),
        (hessian_top_eigenvalue, {"iters": 3}),
        (hessian_trace, {"probes": 2}),
    ):
        reference = measure(net, whole, LOSS, **kwargs, **extra)
        for data in (loader, dict_loader):
            result = measure(net, data, LOSS, **kwargs, **extra)
            for field in ("loss", "sharpness", "eigenvalue", "trace"):
                if hasattr(result, field):
                    assert getattr(result, field) == pytest.approx(getattr(reference, field), rel=1e-4), field
    first = sam_sharpness(net, loader, LOSS, max_batches=1, **kwargs)
    assert first.loss == pytest.approx(
        sam_sharpness(net, (images[:4], labels[:4]), LOSS, **kwargs).loss, rel=1e-6
    )


def test_bad_batches_are_named():
    net = nn.Linear(3, 2)
    with pytest.raises(KeyError, match="label"):
        sam_sharpness(net, {"image": torch.randn(2, 3)}, LOSS)
    with pytest.raises(ValueError, match="scalar"):
        sam_sharpness(net, (torch.randn(2, 3), torch.tensor([0, 1])), nn.CrossEntropyLoss(reduction="none"))
    with pytest.raises(ValueError, match="no batch"):
        sam_sharpness(net, [], LOSS)
    with pytest.raises(ValueError, match="params"):
        sam_sharpness(
            net, (torch.randn(2, 3), torch.tensor([0, 1])), LOSS, params=[nn.Parameter(torch.ones(1))]
        )
