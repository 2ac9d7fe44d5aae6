"""Filter normalisation, 1-D/2-D landscapes and their PNG plots."""

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from monai_sam.sharpness import (
    filter_normalized_direction,
    loss_landscape_1d,
    loss_landscape_2d,
    normalize_filters,
    plot_landscape_1d,
    plot_landscape_2d,
)

F64 = torch.float64


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


def test_normalize_filters_matches_weight_filter_norms_and_is_zero_safe():
    weight = torch.randn(5, 3, 3, 3)
    weight[2] = 0.0  # a dead filter
    direction = torch.randn(5, 3, 3, 3)
    direction[4] = 0.0  # a zero direction filter
    out = normalize_filters(direction, weight)
    assert torch.isfinite(out).all()
    expected = filter_norms(weight)
    expected[4] = 0.0
    torch.testing.assert_close(filter_norms(out), expected)
    # the direction inside each filter is kept
    cosine = nn.functional.cosine_similarity(out[0].flatten(), direction[0].flatten(), dim=0)
    assert cosine == pytest.approx(1.0, abs=1e-6)


class ConvBnNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.bn(self.conv(x)).mean(dim=(2, 3))))


def test_direction_skips_bias_and_norm_layers():
    net = ConvBnNet()
    with torch.no_grad():
        net.conv.weight[1] = 0.0
    params = list(net.parameters())
    direction = filter_normalized_direction(net, params, torch.Generator().manual_seed(0))
    by_name = dict(zip([n for n, _ in net.named_parameters()], direction))
    for name in ("conv.bias", "bn.weight", "bn.bias", "norm.weight", "norm.bias", "fc.bias"):
        assert torch.count_nonzero(by_name[name]) == 0, name
    torch.testing.assert_close(filter_norms(by_name["conv.weight"]), filter_norms(net.conv.weight.detach()))
    torch.testing.assert_close(filter_norms(by_name["fc.weight"]), filter_norms(net.fc.weight.detach()))
    assert torch.count_nonzero(by_name["conv.weight"][1]) == 0
    kept = filter_normalized_direction(net, params, torch.Generator().manual_seed(0), skip_bias_bn=False)
    kept_by_name = dict(zip([n for n, _ in net.named_parameters()], kept))
    assert kept_by_name["bn.weight"].norm() == pytest.approx(float(net.bn.weight.detach().norm()), rel=1e-5)


def test_landscapes_evaluate_the_loss_on_the_grid(quadratic, spectrum, dummy_batch):
    a, _ = spectrum([3.0, 1.0, 0.2])
    w = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    b = torch.tensor([0.1, 0.0, -0.2], dtype=F64)
    model, loss_fn = quadratic(a, b, w)
    line = loss_landscape_1d(
        model, dummy_batch, loss_fn, span=(-0.5, 1.0), points=4, skip_bias_bn=False, progress=False
    )
    d = line.directions[0][0]
    assert d.norm() == pytest.approx(float(w.norm()))  # a 1-D weight is one filter
    expected = [float(loss_fn(w + alpha * d, None)) for alpha in line.alphas]
    np.testing.assert_allclose(line.losses, expected, rtol=1e-12)
    d1, d2 = torch.tensor([1.0, 0.0, 0.0], dtype=F64), torch.tensor([0.0, 0.0, 2.0], dtype=F64)
    plane = loss_landscape_2d(
        model, dummy_batch, loss_fn, span=(-1.0, 1.0), points=3, directions=([d1], [d2]), progress=False
    )
    assert plane.losses.shape == (3, 3)
    for j, beta in enumerate(plane.betas):
        for i, alpha in enumerate(plane.alphas):
            assert plane.losses[j, i] == pytest.approx(
                float(loss_fn(w + alpha * d1 + beta * d2, None)), rel=1e-12
            )
    assert float(model.w.detach().sub(w).abs().max()) == 0.0


def test_random_directions_are_seeded_and_independent():
    torch.manual_seed(0)
    net = ConvBnNet()
    batch = (torch.randn(4, 2, 6, 6), torch.randint(0, 3, (4,)))
    loss_fn = nn.CrossEntropyLoss()
    one = loss_landscape_2d(net, batch, loss_fn, points=2, seed=5, progress=False)
    two = loss_landscape_2d(net, batch, loss_fn, points=2, seed=5, progress=False)
    np.testing.assert_array_equal(one.losses, two.losses)
    d1, d2 = (d[0] for d in one.directions)
    assert not torch.allclose(d1, d2)


def test_plots_written(tmp_path):
    alphas = np.linspace(-1, 1, 9)
    from monai_sam.sharpness import Landscape1D, Landscape2D

    line = Landscape1D(alphas, alphas**2 + 0.1, [])
    plane = Landscape2D(alphas, alphas, alphas[None, :] ** 2 + 2 * alphas[:, None] ** 2 + 0.1, [])
    for path in (
        plot_landscape_1d(
            [("adam", line), ("sam", Landscape1D(alphas, 0.5 * alphas**2 + 0.1, []))],
            tmp_path / "sub" / "one.png",
            log_scale=True,
        ),
        plot_landscape_2d(plane, tmp_path / "two.png", log_scale=True),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
        assert imread(path)[..., :3].std() > 0.05  # not a blank canvas
    assert line.to_dict()["losses"][4] == pytest.approx(0.1)
    assert len(plane.to_dict()["losses"]) == 9
