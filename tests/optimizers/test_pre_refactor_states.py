"""Optimizer state dicts saved before the registry/step-plan/ascent refactor load and resume bit for bit.

``fixtures/pre_refactor_states.json`` (text) was written by ``fixtures/make_pre_refactor_states.py`` run
against commit c64884b: for every sharpness-aware method, the model and optimizer state dicts after three
steps and the true weights two steps later. Each test builds the method with today's code, loads the
decoded state dicts, takes the same two steps on the same stored batches and requires the recorded
weights bit for bit, so it checks both the state-dict format and the step arithmetic against the old code.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from monai_sam.optimizers.registry import METHOD_REGISTRY, find_method

_SCRIPT = Path(__file__).with_name("fixtures") / "make_pre_refactor_states.py"
_spec = importlib.util.spec_from_file_location("make_pre_refactor_states", _SCRIPT)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

SAVED = json.loads(gen.FIXTURE.read_text())
BATCHES = gen.decode(SAVED["batches"])

#: registered methods with no state in the fixture, and why. A method added after c64884b has no
#: pre-refactor state to load: list it here ("added after c64884b").
NOT_IN_FIXTURE: dict[str, str] = {}


def test_the_fixture_holds_the_pre_refactor_code_s_states():
    assert SAVED["source_commit"] == "c64884b"
    assert (SAVED["steps_before"], SAVED["steps_after"]) == (3, 2)
    assert len(BATCHES) == 5


def test_every_method_of_the_fixture_is_still_registered():
    for name in SAVED["methods"]:
        info = find_method(name)
        assert info is not None and info.name == name, name


def test_registered_methods_missing_from_the_fixture_are_listed_with_a_reason():
    registered = {info.name for info in METHOD_REGISTRY}
    assert registered - SAVED["methods"].keys() == NOT_IN_FIXTURE.keys()
    assert all(reason.strip() for reason in NOT_IN_FIXTURE.values())


def test_the_text_codec_round_trips_exactly():
    value = {
        "state": {0: {"step": torch.tensor(3.0), "buf": torch.randn(2, 3, dtype=torch.float64)}},
        "rng": torch.Generator().manual_seed(7).get_state(),
        "groups": [{"betas": (0.9, 0.999), "fused": None, "eps": 1e-8, "lim": -math.inf, "maximize": False}],
        "idx": torch.arange(4),
        "__tensor__": 1,  # a key that looks like a tag
    }
    back = gen.decode(json.loads(json.dumps(gen.encode(value))))
    assert back.keys() == value.keys() and list(back["state"]) == [0]
    for key in ("step", "buf"):
        got, want = back["state"][0][key], value["state"][0][key]
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert back["rng"].dtype == torch.uint8 and torch.equal(back["rng"], value["rng"])
    assert back["groups"] == value["groups"] and isinstance(back["groups"][0]["betas"], tuple)
    assert back["idx"].dtype == torch.int64 and torch.equal(back["idx"], value["idx"])
    assert back["__tensor__"] == 1


def _rounds_as_the_generating_machine() -> bool:
    """Whether torch's float32 kernels here give the fixture's probe bit for bit (same CPU arithmetic)."""
    got = gen.arithmetic_probe(gen.decode(SAVED["methods"]["sam"]["model"]), BATCHES[gen.STEPS_BEFORE])
    return all(torch.equal(a, b) for a, b in zip(got, gen.decode(SAVED["probe"])))


SAME_ARITHMETIC = _rounds_as_the_generating_machine()


@pytest.mark.parametrize("name", sorted(SAVED["methods"]))
def test_a_pre_refactor_state_dict_loads_and_saves_back_unchanged(name):
    """Machine-independent: every tensor and number of the old state dict survives load + save exactly."""
    entry = SAVED["methods"][name]
    _, opt = gen.build(name, gen.decode(entry["config"]), seed=gen.RESUME_SEED)
    opt.load_state_dict(gen.decode(entry["optimizer"]))
    assert json.loads(json.dumps(gen.encode(opt.state_dict()))) == entry["optimizer"]


@pytest.mark.parametrize("name", sorted(SAVED["methods"]))
def test_a_pre_refactor_state_dict_resumes_bit_exactly(name):
    """Bit for bit where torch rounds as the generating machine did; within float32 rounding elsewhere."""
    entry = SAVED["methods"][name]
    got = gen.resume_from_fixture(name, entry, BATCHES)
    expected = gen.decode(entry["after"])
    assert len(got) == len(expected)
    for i, (p, want) in enumerate(zip(got, expected)):
        assert p.dtype == want.dtype and p.shape == want.shape, i
        if SAME_ARITHMETIC:
            assert torch.equal(p, want), (
                f"{name}: parameter {i} differs by up to {(p - want).abs().max():.3e}"
            )
        else:  # another CPU's BLAS sums in another order: the old and new code would both move by ulps
            torch.testing.assert_close(p, want, rtol=1e-5, atol=1e-6)
