"""Renamed knobs stop a bundle run with the new name; the configs, not an import, install the error hook."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bundle_cli import BUNDLES

from monai_sam.bundle import reject_renamed_knobs

HOOK = "$monai_sam.bundle.user_errors.install_excepthook()"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizer", "gsam"], "--optimizer gsam: .* --sam_optimizer gsam"),
        (["--optimizer=adam"], "--optimizer adam: .* --sam_optimizer adam"),
        (["--network", "resnet50"], "--network resnet50: .* --network_name resnet50"),
        (["--rho", "0.1"], "--rho was renamed: use --sam_rho"),
        (["--net", "x"], "--net was renamed: use --network"),
        (["--optim#alpha", "0.2"], "--optim#alpha was renamed: use --optimizer#alpha"),
        (["--rho", "0.1", "--net", "x"], "--sam_rho.*; --net was renamed"),
    ],
)
def test_old_knobs_name_the_new_one(argv, message):
    with pytest.raises(ValueError, match=message):
        reject_renamed_knobs(["run", "--config_file", "configs/train.json", *argv])


@pytest.mark.parametrize(
    "argv",
    [
        ["--sam_optimizer", "gsam", "--sam_rho", "0.1", "--network_name", "resnet50"],
        ["--optimizer#lr", "0.01", "--network#x", "1"],  # nested overrides of the components
        ["--network", "$@network_def", "--optimizer", "@my_optimizer"],  # replacing a component on purpose
        ["--rho_min", "0.0", "--networks", "a"],  # other ids that only start like an old one
    ],
)
def test_new_knobs_and_component_overrides_pass(argv):
    reject_renamed_knobs(["run", *argv])


def test_other_programs_command_lines_are_not_read(monkeypatch):
    # the study and the benchmarks build workflows in-process; their own --rho-like options are theirs
    monkeypatch.setattr(sys, "argv", ["monai-sam", "--rho", "0.1"])
    reject_renamed_knobs()


def test_importing_user_errors_installs_nothing():
    code = "import sys, monai_sam.bundle.user_errors as u; print(sys.excepthook is u.excepthook)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
@pytest.mark.parametrize("name", ["train", "inference"])
def test_configs_install_the_hook_and_check_knobs_first(bundle, name):
    initialize = json.loads((BUNDLES[bundle] / "configs" / f"{name}.json").read_text())["initialize"]
    assert initialize[:2] == [HOOK, "$monai_sam.bundle.reject_renamed_knobs()"]
