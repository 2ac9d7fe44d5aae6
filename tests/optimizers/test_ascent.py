"""The ascent and the restore as functions, on closed forms (no optimizer involved)."""

from __future__ import annotations

import math

import torch

from monai_sam.optimizers.ascent import (
    ascent_directions,
    ascent_offsets,
    move_to_offset_,
    multiply_where_given,
    restore_,
    sam_ascent,
)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_sam_ascent_is_rho_along_the_unit_gradient():
    """g = (3, 4), (0,) over two tensors: ||g|| = 5, so e = rho * g / 5."""
    grads = [_t(3.0, 4.0), _t(0.0)]
    e = sam_ascent(grads, rho=0.5, eps=0.0)
    torch.testing.assert_close(e[0], _t(0.3, 0.4), rtol=0, atol=1e-15)
    assert torch.equal(e[1], _t(0.0))
    assert torch.equal(grads[0], _t(3.0, 4.0))  # out of place
    assert math.isclose(float(torch.linalg.vector_norm(torch.cat(e))), 0.5)


def test_eps_is_added_to_the_norm():
    e = sam_ascent([_t(3.0, 4.0)], rho=1.0, eps=5.0)
    torch.testing.assert_close(e[0], _t(0.3, 0.4), rtol=0, atol=1e-15)  # 1 / (5 + 5)


def test_adaptive_ascent_is_rho_t_squared_g_over_the_norm_of_t_g():
    """ASAM's form with T = (2, 1) on the first tensor and identity on the second."""
    grads = [_t(3.0, 4.0), _t(1.0)]
    transform = [_t(2.0, 1.0), None]
    e = sam_ascent(grads, rho=0.5, eps=0.0, transform=transform)
    norm = math.sqrt(6.0**2 + 4.0**2 + 1.0**2)  # ||T g|| = ||(6, 4, 1)||
    torch.testing.assert_close(e[0], _t(0.5 * 12.0 / norm, 0.5 * 4.0 / norm), rtol=0, atol=1e-15)
    torch.testing.assert_close(e[1], _t(0.5 * 1.0 / norm), rtol=0, atol=1e-15)


def test_a_non_finite_gradient_perturbs_nothing():
    for bad in (math.inf, math.nan):
        e = sam_ascent([_t(3.0, bad), _t(1.0)], rho=0.5)
        assert all(torch.equal(x, torch.zeros_like(x)) for x in e)


def test_in_place_variants_write_into_the_gradients():
    grads = [_t(3.0, 4.0)]
    directions = ascent_directions(grads, [_t(2.0, 1.0)], inplace=True)
    assert directions[0] is grads[0] and torch.equal(grads[0], _t(6.0, 4.0))
    e = ascent_offsets(directions, 0.5, None, inplace=True)
    assert e[0] is grads[0] and torch.equal(grads[0], _t(3.0, 2.0))
    kept = [_t(3.0, 4.0)]
    assert ascent_directions(kept, None, inplace=True)[0] is kept[0]  # SAM: g itself


def test_multiply_where_given_leaves_the_others_alone():
    tensors = [_t(1.0, 2.0), _t(3.0)]
    out = multiply_where_given(tensors, [None, _t(2.0)], inplace=False)
    assert out[0] is tensors[0] and torch.equal(out[1], _t(6.0)) and torch.equal(tensors[1], _t(3.0))
    assert multiply_where_given(tensors, [None, None], inplace=True) == tensors


def test_restore_and_move_to_offset_are_copies_not_subtractions():
    """w + e - e is not w in floating point; restoring from the backup is."""
    w = [_t(0.1, 1e16)]
    backup = [w[0].clone()]
    e = [_t(0.2, 1.0)]
    move_to_offset_(w, backup, e)
    assert torch.equal(w[0], backup[0] + e[0])
    move_to_offset_(w, backup, e, alpha=-1.0)
    assert torch.equal(w[0], backup[0] - e[0])
    restore_(w, backup)
    assert torch.equal(w[0], backup[0])
    restore_([], [])
