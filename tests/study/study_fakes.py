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


class FakeExternalRun(FakeRun):
    """:class:`FakeRun` plus an external set ``site`` of 40 images (20 patients, 3 devices).

    Every run of a (network, fold, seed) pair sees the same per-image noise; SAM's malignant logit separates
    the classes twice as strongly as the baseline's, ASAM's half as strongly, so SAM's external AUC is
    higher in every pair and ASAM's lower. The record has what :class:`BundleRunFunction` stores.
    """

    def __call__(self, spec):
        from monai_sam.metrics import OperatingPoint, external_validation_metrics

        result = super().__call__(spec)
        labels = np.repeat([0, 1], 20)  # model classes benign (0) and malignant (1)
        noise = np.random.default_rng([spec.fold, spec.seed, len(spec.network.name), 3]).normal(0, 1.5, 40)
        strength = {"sam": 1.6, "asam": 0.4}.get(spec.optimizer.label, 0.8)
        normal = np.random.default_rng([spec.fold, spec.seed, 5]).normal(-1.0, 1.0, 40)  # raw != conditional
        logits = np.stack([np.zeros(40), strength * labels + noise, normal], axis=1)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        scores = probs[:, 1] / (probs[:, 0] + probs[:, 1])
        groups = ["C" if i >= 38 else ("A" if i % 4 < 2 else "B") for i in range(40)]  # C: malignant only
        cases = [f"p{i // 2}" for i in range(40)]
        operating = OperatingPoint(0.5, "youden", "internal validation split", 10, 4, 0.75, 0.8)
        metrics = external_validation_metrics(labels, scores, operating, cases, groups, n_resamples=50)
        metrics.update(
            set={"n": 40, "model_classes": {"benign": 20, "malignant": 20}, "cases": 20},
            score={"rule": "conditional", "definition": "p(malignant) / (p(benign) + p(malignant))"},
            internal={"n": 10, "positives": 4, "auc": result["test"]["macro_auc"]},
        )
        result["external"] = {
            "site": {
                "positive": 1,
                "mapped": [0, 1],
                "score_rule": "conditional",
                "metrics": metrics,
                "predictions": {
                    "ids": [f"id{i:02d}" for i in range(40)],
                    "labels": labels.tolist(),
                    "probs": probs.tolist(),
                    "cases": cases,
                    "groups": groups,
                },
            }
        }
        return result
