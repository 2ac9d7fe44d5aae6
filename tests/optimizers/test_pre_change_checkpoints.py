"""State dicts saved before the registry/step-plan/ascent refactor load and resume bit for bit.

``fixtures/pre_change_checkpoints.pt`` was written by ``fixtures/make_pre_change_checkpoints.py`` run
against commit c64884b; this test continues each saved run with the current code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).with_name("fixtures")
sys.path.insert(0, str(FIXTURES))
from make_pre_change_checkpoints import CONFIGS, STEPS, build, run, true_weights  # noqa: E402

SAVED = torch.load(FIXTURES / "pre_change_checkpoints.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_pre_change_state_dict_resumes_bit_exactly(name):
    saved = SAVED[name]
    net, opt = build(name)
    net.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    run(net, opt, STEPS)
    with true_weights(opt):
        for p, expected in zip(net.parameters(), saved["after"]):
            assert torch.equal(p, expected)
