"""A bundle run that fails because of its input ends with our message on the last line of stderr."""

from __future__ import annotations

import pytest
import torch
from bundle_cli import BUNDLES, config, run_cli

from monai_sam.bundle import select_split
from monai_sam.bundle.user_errors import find_user_error, format_user_error
from monai_sam.optimizers import create_optimizer


def _last_line(text: str) -> str:
    return text.rstrip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("names", "args", "message"),
    [
        (
            ("train",),
            ["--dataset_dir", "/no/busi"],
            "FileNotFoundError: dataset_dir '/no/busi' is not a directory",
        ),
        (
            ("train",),
            ["--network_name", "densenet"],
            "ValueError: unknown network 'densenet'; available networks:",
        ),
        (
            ("inference",),
            ["--dataset_dir", "/no/images"],
            "FileNotFoundError: dataset_dir '/no/images' is not a directory",
        ),
        (("inference",), ["--input_dir", "."], "ValueError: dataset_dir '.' holds no image"),  # the alias
        (
            ("train",),
            ["--optimizer", "asam", "--rho", "0.5"],
            "ValueError: --optimizer asam: 'optimizer' is now the torch optimizer object (the MONAI Model "
            "Zoo's id); give the name with --sam_optimizer asam; --rho was renamed: use --sam_rho",
        ),
        (
            ("inference",),
            ["--network", "resnet18", "--net", "x"],
            "ValueError: --network resnet18: 'network' is now the built network (the MONAI Model Zoo's id); "
            "give the name with --network_name resnet18",
        ),
        (("train", "evaluate"), ["--optim", "sgd"], "ValueError: --optim was renamed: use --optimizer"),
    ],
)
def test_cause_is_the_last_line_on_stderr(names, args, message, tmp_path):
    # inference checks the bundle's models/model.pt before it reads the images
    root = ["--bundle_root", str(BUNDLES["cnn"])] if names == ("inference",) else []
    proc = run_cli(
        ["run", "--config_file", config("cnn", *names), "--output_dir", str(tmp_path), *root, *args],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert _last_line(proc.stderr).startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "MONAI_SAM_TRACEBACK=1" in proc.stderr


@pytest.mark.slow
def test_full_traceback_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("MONAI_SAM_TRACEBACK", "1")
    proc = run_cli(
        [
            "run",
            "--config_file",
            config("cnn", "train"),
            "--output_dir",
            str(tmp_path),
            "--dataset_dir",
            "/no/busi",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr
    assert "dataset_dir '/no/busi' is not a directory" in proc.stderr


def _raised(fn) -> BaseException:
    try:
        fn()
    except Exception as err:  # the error under test
        return err
    raise AssertionError("no error raised")


def test_our_check_inside_monai_wrapper_is_a_user_error():
    from monai.utils import instantiate

    params = [torch.nn.Parameter(torch.zeros(2))]
    err = _raised(
        lambda: instantiate("monai_sam.optimizers.create_optimizer", "default", name="sharpy", params=params)
    )
    assert isinstance(err, RuntimeError) and "Failed to instantiate" in str(err)
    cause = find_user_error(err)
    assert isinstance(cause, ValueError) and "Unknown optimizer name 'sharpy'" in str(cause)
    report = format_user_error(err, cause)
    assert _last_line(report).startswith("ValueError: Unknown optimizer name 'sharpy'")
    assert "monai_sam.optimizers.create_optimizer" in report


def test_errors_from_libraries_and_other_types_are_bugs():
    from monai.utils import instantiate

    # a ValueError raised inside a library (not one of our checks) keeps the full traceback
    err = _raised(lambda: instantiate("json.loads", "default", s="{"))
    assert isinstance(err.__cause__, ValueError) and find_user_error(err) is None
    # another error type raised in our code (here an AttributeError) is a bug too
    err = _raised(lambda: select_split(None, "test"))
    assert isinstance(err, AttributeError) and find_user_error(err) is None

    # our ValueError re-raised through a non-MONAI wrapper is not unwrapped
    def wrapped():
        try:
            create_optimizer("sharpy", [torch.nn.Parameter(torch.zeros(1))])
        except ValueError as inner:
            raise RuntimeError("something else") from inner

    assert find_user_error(_raised(wrapped)) is None
