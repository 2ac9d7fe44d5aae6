"""The bundles and the study log nothing about their own defaults."""

from __future__ import annotations

import json
import logging

import pytest
from bundle_cli import BUNDLES
from monai.bundle import ConfigWorkflow

from monai_sam.bundle.logs import suppressed_message

NETWORK = {"cnn": "resnet18", "vit": "vit_small"}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _workflow(bundle: str, **overrides) -> ConfigWorkflow:
    return ConfigWorkflow(
        config_file=str(BUNDLES[bundle] / "configs" / "train.json"),
        logging_file=False,
        workflow_type="train",
        network_name=NETWORK[bundle],
        **overrides,
    )


def test_monai_logging_file_notice_is_suppressed_only_inside():
    target = logging.getLogger("monai.bundle.workflows")
    records = _Records()
    target.addHandler(records)
    try:
        with suppressed_message("monai.bundle.workflows", "Logging file is set to False"):
            _workflow("cnn")
            target.warning("another warning")
        assert records.messages == ["another warning"]
        _workflow("cnn")
        assert any(m.startswith("Logging file is set to False") for m in records.messages)
    finally:
        target.removeHandler(records)


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_plain_optimizer_default_rho_logs_no_warning(bundle, caplog):
    with caplog.at_level(logging.WARNING, logger="monai_sam.optimizers.factory"):
        parser = _workflow(bundle, sam_optimizer="adam").parser
        parser.get_parsed_content("optimizer")
        assert parser.get_parsed_content("settings")["rho"] is None
    assert "ignoring" not in caplog.text
    sam = _workflow(bundle, sam_optimizer="asam").parser
    assert sam.get_parsed_content("optimizer").param_groups[0]["rho"] == 0.05  # the bundle's default
    assert sam.get_parsed_content("settings")["rho"] == pytest.approx(0.05)
    with caplog.at_level(logging.WARNING, logger="monai_sam.optimizers.factory"):
        _workflow(bundle, sam_optimizer="adam", sam_rho=0.1).parser.get_parsed_content("optimizer")
    assert "ignoring ['rho']" in caplog.text  # a rho the user gives a plain optimizer is reported


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_one_log_line_per_iteration(bundle):
    handlers = json.loads((BUNDLES[bundle] / "configs" / "train.json").read_text())["train"]["handlers"]
    for handler in handlers:
        if not isinstance(handler, dict):
            continue
        iteration_level = handler.get("epoch_level") is False
        for flag in ("print_rho", "print_lr"):
            if iteration_level and flag in handler:
                assert handler[flag] is False, (handler["_target_"], flag)  # the loss line is the only one
