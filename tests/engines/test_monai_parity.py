"""Parity matrix: MONAI's own trainer, ``SharpnessAwareIteration`` and ``SharpnessAwareTrainer``.

Plain Adam (``create_optimizer("adam")`` and a raw ``torch.optim.Adam``) must leave bit-identical weights,
losses, outputs (``pred`` after decollation/postprocessing, in its own structure) and metrics to MONAI's
``SupervisedTrainer._iteration`` after several iterations; SAM must equal SAM written by hand on the same
full network output (see ``parity_cases``).
"""

from __future__ import annotations

import pytest
import torch
from parity_cases import CASES, differences, sam_reference, state_differences, train

from monai_sam.engines import SharpnessAwareIteration

_CASES = {case.name: case for case in CASES}
_VARIANTS = [
    ("iteration", "adam"),
    ("iteration", "torch_adam"),
    ("trainer", "adam"),
    ("trainer", "torch_adam"),
]


def _mismatches(reference, result) -> list[str]:
    found = [f"weight/buffer {k}" for k in state_differences(reference.state, result.state)]
    found += differences(reference.losses, result.losses, "losses")
    found += differences(reference.output, result.output, "state.output")
    found += differences(reference.metrics, result.metrics, "state.metrics")
    return found


@pytest.mark.parametrize("name", list(_CASES))
def test_plain_adam_is_bit_identical_to_monai(name):
    case = _CASES[name]
    monai = train(case, "monai", "torch_adam")
    assert len(monai.losses) == case.epochs * len(case.batches())
    failures = {
        f"{runner}+{optimizer}": _mismatches(monai, train(case, runner, optimizer))
        for runner, optimizer in _VARIANTS
    }
    failures = {k: v for k, v in failures.items() if v}
    assert not failures, failures


# The SAM passes do not depend on decollation: the decollate=False twin of the list case is left out here.
_SAM_CASES = [name for name in _CASES if name != "segresnetds_deep_supervision_list_no_decollate"]


@pytest.mark.parametrize("runner", ["iteration", "trainer"])
@pytest.mark.parametrize("name", _SAM_CASES)
def test_sam_equals_the_two_pass_reference(name, runner):
    case = _CASES[name]
    reference = sam_reference(case)
    ours = train(case, runner, "sam")
    rtol, atol = case.sam_tol
    assert ours.state.keys() == reference.state.keys()
    for key in reference.state:
        torch.testing.assert_close(ours.state[key], reference.state[key], rtol=rtol, atol=atol, msg=key)
    torch.testing.assert_close(torch.stack(ours.losses), torch.stack(reference.losses), rtol=rtol, atol=atol)
    output = ours.output[0] if isinstance(ours.output, list) else ours.output
    assert output["num_passes"] == 2  # SAM really ran: two passes per step


def test_sam_moves_the_weights_away_from_plain_adam():
    """The SAM comparison is not vacuous: at this rho, SAM ends far from plain Adam."""
    case = _CASES["segresnetds_deep_supervision_list"]
    sam, adam = sam_reference(case), train(case, "monai", "torch_adam")
    assert state_differences(adam.state, sam.state)
    gap = max((sam.state[k].double() - adam.state[k].double()).abs().max().item() for k in sam.state)
    assert gap > 1e-4


@pytest.mark.parametrize(
    "name", ["segresnetds_deep_supervision_list", "segresnetds_deep_supervision_list_no_decollate"]
)
def test_choosing_one_head_breaks_deep_supervision_parity(name):
    """What the old default did (keep element 0 of a list output) is caught by the matrix."""
    case = _CASES[name]
    monai = train(case, "monai", "torch_adam")
    head_only = train(case, "iteration", "torch_adam", iteration=SharpnessAwareIteration(output_index=0))
    assert state_differences(monai.state, head_only.state)
    assert differences(monai.losses, head_only.losses, "losses")
