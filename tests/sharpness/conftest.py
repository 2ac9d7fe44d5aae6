"""Shared fixtures: float64 quadratic/linear models whose sharpness has a closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class VectorModel(nn.Module):
    """A model whose output is its own weight vector w; the loss function defines L(w)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def rotated_spectrum(eigenvalues: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric float64 matrix with the given eigenvalues, and its eigenvectors (columns)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T, q


@pytest.fixture
def dummy_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A one-sample batch; VectorModel ignores the input."""
    return torch.zeros(1, 1), torch.zeros(1)


@pytest.fixture
def quadratic():
    """Factory: (model, loss_fn) with L(w) = 1/2 w^T A w + b^T w for given A, b, w."""

    def make(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor):
        return VectorModel(w), lambda out, _target: 0.5 * out @ a @ out + b @ out

    return make


@pytest.fixture
def spectrum():
    """Factory for a symmetric matrix with a known spectrum (see rotated_spectrum)."""
    return rotated_spectrum
