"""Helpers of the study tests: study configs and a synthetic run function (no training).

A plain module (not ``conftest``): several test folders have a conftest, and importing one by that
name is ambiguous when the whole suite runs.
"""

import numpy as np

from monai_sam.study.config import StudyConfig


def make_config(**changes) -> StudyConfig:
    """A small valid study config (phantom data, two networks, three optimizers)."""
    raw = {
        "name": "unit",
        "data": {"source": "phantom", "folds": 5},
        "networks": ["resnet18", "vit_small"],
        "optimizers": ["adam", {"name": "sam", "rho": 0.05}, {"name": "asam", "rho": 0.5}],
        "seeds": [0, 1],
        "sharpness": {"measures": ["hessian_top_eigenvalue", "sam_sharpness"]},
    }
    raw.update(changes)
    return StudyConfig.from_dict(raw)


class FakeRun:
    """Deterministic synthetic results: SAM adds ``sam_gain`` to test metrics, ASAM subtracts ``asam_loss``.

    Records the run ids it was called with; raises on the ``fail_at``-th call (1-based) to simulate a crash.
    """

    def __init__(self, sam_gain=0.05, asam_loss=0.0, noise=0.01, fail_at=None):
        self.calls = []
        self.sam_gain, self.asam_loss, self.noise, self.fail_at = sam_gain, asam_loss, noise, fail_at

    def __call__(self, spec):
        self.calls.append(spec.run_id)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("simulated crash")
        rng = np.random.default_rng([spec.fold, spec.seed, len(spec.network.name)])
        base = 0.75 + rng.normal(0, 0.03)  # shared by all optimizers of a (network, fold, seed) pair
        shift = {"sam": self.sam_gain, "asam": -self.asam_loss}.get(spec.optimizer.label, 0.0)
        own = np.random.default_rng([spec.fold, spec.seed, len(spec.optimizer.label), 7]).normal(
            0, self.noise
        )
        value = float(base + shift + own)
        test = {m: value for m in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")}
        test.update(malignant_sensitivity=value, malignant_specificity=value, cross_entropy=1 - value)
        return {
            "test": test,
            "train": {"accuracy": 0.99, "cross_entropy": 0.05},
            "gap": {"loss": 0.95 - value, "accuracy": 0.99 - value},
            "sharpness": {"hessian_top_eigenvalue": 50 * (1 - value), "sam_sharpness": 0.1},
            "curves": {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_key_metric": [0.6, value]},
            "passes": 20 if spec.optimizer.label == "adam" else 40,
            "train_wall_s": 1.0,
        }
