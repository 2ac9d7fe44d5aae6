"""Shared fixtures of the study tests."""

import pytest
from study_fakes import FakeRun


@pytest.fixture
def fake_run():
    return FakeRun()
