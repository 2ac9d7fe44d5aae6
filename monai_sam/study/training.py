"""The real run function of a study: train through a bundle's ``train.json``, then evaluate and measure.

One training code path: every run builds ``monai.bundle.ConfigWorkflow(config_file=<bundle>/configs/
train.json, workflow_type="train", **knobs)`` with the bundle's documented knobs (``dataset_dir``,
``datalist``, ``output_dir``, ``sam_optimizer``, ``sam_rho``, ``lr``, ``max_epochs``, ``batch_size``,
``image_size``, ``num_classes``, ``network_name``, ``pretrained_path``, ``amp``, ``seed``), so a study run
trains exactly as ``python -m monai.bundle run`` would. Per-method hyperparameters other than ``rho``
(GSAM ``alpha``, WSAM ``gamma``, ``interval``...) are passed as overrides of the optimizer component
(``optimizer#<key>``); ``start_fraction`` (late-phase mode) becomes the ``sam_start_fraction`` knob.

Evaluation reuses the bundle's components instead of a second workflow: the trained ``network_def``
(with the best-validation checkpoint loaded, or the last weights) and the bundle's validation
preprocessing (``validate#preprocessing``) are applied, in eval mode, to the fold's training and test
lists. Running the same transforms and mode on both is what makes the generalization gap meaningful,
and having the probabilities gives every metric of :func:`monai_sam.metrics.classification_metrics`.

External test sets (``data.external``) go through the same network and preprocessing: each run records
their metrics (:func:`monai_sam.bundle.external.evaluate_external_set`, the operating point chosen on
the fold's validation images), the test fold's AUC of the same task, and the per-image predictions under
anonymous ids (hashes of the image path relative to the set's folder, and of the patient id).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_sam.bundle.external import evaluate_external_set
from monai_sam.bundle.knobs import reject_renamed_overrides
from monai_sam.bundle.logs import remove_file_logs, suppressed_message
from monai_sam.bundle.prediction import predict_probabilities
from monai_sam.metrics import classification_metrics
from monai_sam.study.config import StudyConfig
from monai_sam.study.data import StudyData, prepare_study_data
from monai_sam.study.grid import RunSpec

__all__ = ["BundleRunFunction", "TrainingRecorder", "bundle_config_file", "default_bundles_dir", "image_id"]

#: optimizer-spec keys that configure the bundle's iteration function, not ``create_optimizer``.
ITERATION_KNOBS = {"start_fraction": "sam_start_fraction"}
#: Patient-bootstrap resamples of every run's external metrics (the bundles' default too).
EXTERNAL_BOOTSTRAP_RESAMPLES = 2000

logger = logging.getLogger(__name__)


def default_bundles_dir() -> Path:
    """``<repo>/bundles`` next to the installed ``monai_sam`` package (editable installs, checkouts)."""
    return Path(__file__).resolve().parents[2] / "bundles"


def bundle_config_file(bundle: str, bundles_dir: str | Path | None, name: str = "train.json") -> Path:
    """Path of ``configs/<name>`` of ``bundle`` (a name under ``bundles_dir`` or a bundle directory).

    Raises:
        FileNotFoundError: naming the path tried and how to point the study elsewhere.
    """
    direct = Path(bundle).expanduser()
    root = direct if direct.is_dir() else Path(bundles_dir or default_bundles_dir()) / bundle
    path = root / "configs" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"bundle config not found: {path}; set bundles_dir in the study config (or a network's "
            "'bundle:' to a bundle directory)"
        )
    return path


class TrainingRecorder:
    """Collects per-epoch curves and pass counts from a bundle's trainer and evaluator.

    Attaches to Ignite events, so it sees exactly what the bundle runs: the mean training loss per
    epoch, the mean online SAM sharpness (``sharpness`` in the iteration output, when the optimizer is
    sharpness-aware), every validation metric, and the number of forward-backward passes (the
    iteration's ``num_passes`` output, 1 for a plain optimizer).
    """

    def __init__(self) -> None:
        self.curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "train_online_sharpness": []}
        self.val: list[dict[str, float]] = []
        self.passes = 0
        self.iterations = 0
        self._losses: list[float] = []
        self._sharpness: list[float] = []
        self._trainer: Any = None

    def attach(self, trainer: Any, evaluator: Any | None) -> TrainingRecorder:
        """Register the handlers on ``trainer`` (and ``evaluator`` when the bundle validates)."""
        from ignite.engine import Events

        self._trainer = trainer
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)
        if evaluator is not None:
            evaluator.add_event_handler(Events.COMPLETED, self._validated)
        return self

    @staticmethod
    def _scalar(value: Any) -> float:
        """A float from a tensor or number (``nan`` otherwise)."""
        if isinstance(value, torch.Tensor):
            return float(value.detach().float().mean()) if value.numel() else math.nan
        return float(value) if isinstance(value, (int, float)) else math.nan

    def _iteration(self, engine: Any) -> None:
        output = engine.state.output
        if isinstance(output, list):  # decollated output: one dict per sample, loss identical
            output = output[0] if output else {}
        output = output if isinstance(output, dict) else {}
        self.iterations += 1
        self.passes += int(self._scalar(output.get("num_passes", 1)) or 1)
        self._losses.append(self._scalar(output.get("loss")))
        self._sharpness.append(self._scalar(output.get("sharpness")))

    def _epoch(self, engine: Any) -> None:
        with np.errstate(all="ignore"):
            loss = float(np.nanmean(self._losses)) if self._losses else math.nan
            sharp = np.asarray(self._sharpness, dtype=float)
            sharp_mean = float(np.nanmean(sharp)) if np.isfinite(sharp).any() else math.nan
        self.curves["epoch"].append(engine.state.epoch)
        self.curves["train_loss"].append(loss)
        self.curves["train_online_sharpness"].append(sharp_mean)
        self._losses, self._sharpness = [], []

    def _validated(self, engine: Any) -> None:
        metrics = {k: self._scalar(v) for k, v in engine.state.metrics.items()}
        key = getattr(engine.state, "key_metric_name", None)
        epoch = self._trainer.state.epoch if self._trainer is not None else len(self.val) + 1
        self.val.append({"epoch": epoch, "key_metric": metrics.get(key, math.nan), **metrics})

    def result(self) -> dict[str, Any]:
        """Curves as lists (``val_key_metric`` aligned on validation epochs) and pass counts."""
        curves: dict[str, Any] = dict(self.curves)
        curves["val_epoch"] = [v["epoch"] for v in self.val]
        curves["val_key_metric"] = [v["key_metric"] for v in self.val]
        for key in sorted({k for v in self.val for k in v} - {"epoch", "key_metric"}):
            name = key if key.startswith("val_") else f"val_{key}"
            curves[name] = [v.get(key, math.nan) for v in self.val]
        return curves


class BundleRunFunction:
    """Train one :class:`RunSpec` through its bundle, evaluate it, measure sharpness; returns a record.

    The data set and folds are prepared on the first call (see :func:`prepare_study_data`).

    Args:
        config: the study configuration.
        output_dir: the study output directory; each run works in ``work/<run_id>/``, which is
            removed after the run unless ``keep_work`` (checkpoints are large).
        keep_work: keep the bundle's output directory (checkpoint, logs, TensorBoard) of every run.
    """

    def __init__(self, config: StudyConfig, output_dir: str | Path, keep_work: bool = False) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.keep_work = keep_work
        self._data: StudyData | None = None

    def prepare(self) -> StudyData:
        """Generate or locate the data and write the fold files (raises on missing data)."""
        return self.data

    @property
    def data(self) -> StudyData:
        """The study's data set and fold files (prepared once)."""
        if self._data is None:
            self._data = prepare_study_data(self.config, self.output_dir)
        return self._data

    def overrides(self, spec: RunSpec, work_dir: Path) -> dict[str, Any]:
        """The ConfigWorkflow overrides (bundle knobs) for ``spec``."""
        train = spec.train_settings(self.config.train)
        knobs: dict[str, Any] = {
            "dataset_dir": str(self.data.dataset_dir),
            "datalist": str(self.data.split_file(spec.repeat, spec.fold)),
            "output_dir": str(work_dir),
            "sam_optimizer": spec.optimizer.name,
            "lr": float(train["lr"]),
            "max_epochs": int(train["max_epochs"]),
            "batch_size": int(train["batch_size"]),
            "image_size": int(train["image_size"]),
            "num_classes": int(self.config.data["num_classes"]),
            "network_name": spec.network.name,
            "amp": bool(train["amp"]),
            "num_workers": int(train["num_workers"]),
            "seed": int(spec.seed),
            "progress": False,  # one study-level progress bar instead of one per run
            "test_at_end": False,  # the study evaluates every run itself (its own test metrics)
        }
        if self.config.data.get("reader_options") is not None:
            knobs["reader_options"] = dict(self.config.data["reader_options"])
        if spec.optimizer.rho is not None:
            knobs["sam_rho"] = float(spec.optimizer.rho)
        pretrained = (train.get("pretrained") or {}).get(spec.network.name)
        if pretrained:
            knobs["pretrained_path"] = str(pretrained)
        for key, value in spec.optimizer.kwargs.items():
            knobs[ITERATION_KNOBS.get(key, f"optimizer#{key}")] = value
        overrides = dict(train.get("overrides") or {})
        reject_renamed_overrides(overrides)  # a study config written for the old knob names
        knobs.update(overrides)
        return knobs

    def __call__(self, spec: RunSpec) -> dict[str, Any]:
        """Train, evaluate on the fold's training and test lists, and measure sharpness."""
        from monai.bundle import ConfigWorkflow
        from monai.utils import set_determinism

        work_dir = self.output_dir / "work" / spec.run_id
        shutil.rmtree(work_dir, ignore_errors=True)  # a half-finished earlier attempt
        work_dir.mkdir(parents=True)
        config_file = bundle_config_file(spec.network.bundle, self.config.bundles_dir)
        # logging_file=False keeps the study's logging as it is; MONAI warns about that on every run
        with suppressed_message("monai.bundle.workflows", "Logging file is set to False"):
            workflow = ConfigWorkflow(
                config_file=str(config_file),
                workflow_type="train",
                logging_file=False,
                **self.overrides(spec, work_dir),
            )
        workflow.initialize()
        parser = workflow.parser
        recorder = TrainingRecorder().attach(
            parser.get_parsed_content("train#trainer"), _optional(parser, "validate#evaluator")
        )
        start = time.perf_counter()
        workflow.run()
        train_wall = time.perf_counter() - start
        network = parser.get_parsed_content("network_def")
        evaluation = spec.evaluation_settings(self.config.evaluation)
        checkpoint = self._load_checkpoint(network, work_dir, evaluation)
        transform = _optional(parser, "validate#preprocessing")
        workflow.finalize()
        set_determinism(seed=None)
        start = time.perf_counter()
        split = _read_split(self.data.split_file(spec.repeat, spec.fold))
        train_metrics, _ = self._evaluate(network, split["training"], transform)
        test_metrics, test_predictions = self._evaluate(network, split["test"], transform)
        eval_wall = time.perf_counter() - start
        start = time.perf_counter()
        external = self._external(network, split, transform, test_predictions)
        external_wall = time.perf_counter() - start
        start = time.perf_counter()
        sharpness = self._sharpness(network, split["training"], transform, spec.seed)
        sharp_wall = time.perf_counter() - start
        remove_file_logs(work_dir)  # bundles close their own in finalize; a custom bundle may not
        if not self.keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)
        return {
            "test": test_metrics,
            "train": train_metrics,
            "split_seed": self.config.split_seeds[spec.repeat],
            "test_predictions": test_predictions,
            "gap": {
                "loss": test_metrics["cross_entropy"] - train_metrics["cross_entropy"],
                "accuracy": train_metrics["accuracy"] - test_metrics["accuracy"],
                "macro_auc": train_metrics["macro_auc"] - test_metrics["macro_auc"],
            },
            "sharpness": sharpness,
            "curves": recorder.result(),
            "passes": recorder.passes,
            "iterations": recorder.iterations,
            "epochs": len(recorder.curves["epoch"]),
            "checkpoint": checkpoint,
            "train_wall_s": train_wall,
            "eval_wall_s": eval_wall,
            "sharpness_wall_s": sharp_wall,
            "bundle_config": str(config_file),
            # only with external sets: records of studies without them stay as they were
            **({"external": external, "external_wall_s": external_wall} if external else {}),
        }

    def _load_checkpoint(self, network: torch.nn.Module, work_dir: Path, evaluation: dict[str, Any]) -> str:
        """Load the best-validation checkpoint when the run's ``evaluation.checkpoint`` is ``best``.

        Returns:
            What was evaluated: ``best (model.pt)``, ``last`` or ``last (no checkpoint found)``.
        """
        if evaluation["checkpoint"] != "best":
            return "last"
        # the bundles' CheckpointSaver writes the best validation key metric to <output_dir>/model.pt
        best = [work_dir / "model.pt"] if (work_dir / "model.pt").is_file() else []
        if not best:
            logger.warning("no best-model checkpoint under %s: evaluating the last weights", work_dir)
            return "last (no checkpoint found)"
        state = torch.load(best[-1], map_location="cpu", weights_only=True)
        if isinstance(state, dict) and set(state) == {"model"}:
            state = state["model"]
        elif isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        network.load_state_dict(state)
        return f"best ({best[-1].name})"

    def _loader(self, items: list[dict], transform: Any, batch_size: int) -> torch.utils.data.DataLoader:
        """A deterministic loader over ``items`` with the bundle's evaluation transforms."""
        from monai.data import DataLoader, Dataset

        workers = int(self.config.train["num_workers"])
        return DataLoader(
            Dataset(items, transform=self._transform(transform)),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
        )

    def _transform(self, transform: Any) -> Any:
        """The bundle's evaluation transforms, or the default ones of a bundle without them."""
        if transform is not None:
            return transform
        from monai_sam.data import ultrasound_transforms

        return ultrasound_transforms(int(self.config.train["image_size"]), train=False)

    def _predict(
        self, network: torch.nn.Module, items: list[dict], transform: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and labels of ``items`` (eval mode, the evaluation transforms)."""
        train = self.config.train
        return predict_probabilities(
            network, items, self._transform(transform), int(train["batch_size"]), int(train["num_workers"])
        )

    def _evaluate(
        self, network: torch.nn.Module, items: list[dict], transform: Any
    ) -> tuple[dict[str, float], dict[str, list]]:
        """Every classification metric on ``items`` and the per-image predictions behind them.

        The predictions (``ids``, ``labels``, ``probs``) let the report pool out-of-fold
        predictions of the same images across runs (DeLong's test). An image's id is a hash of its
        path relative to the data set folder, so no file name (which may name a patient) is stored.
        """
        p, y = self._predict(network, items, transform)
        predictions = {
            "ids": [image_id(item["image"], self.data.dataset_dir) for item in items],
            "labels": [int(v) for v in y],
            "probs": np.round(p.astype(np.float64), 6).tolist(),
        }
        return classification_metrics(y, p, self.data.class_names), predictions

    def _external(
        self, network: torch.nn.Module, split: dict[str, Any], transform: Any, test: dict[str, list]
    ) -> dict[str, Any]:
        """Every external set: metrics, the test fold's AUC of the same task, anonymous per-image predictions.

        The operating point is chosen on the fold's validation images (never the external ones); the
        internal AUC uses the test fold's stored predictions (``test``) of the set's mapped classes.
        Patient ids are stored hashed too; group names (scanners) are kept as they are.
        """
        if not self.data.external:
            return {}
        validation = self._predict(network, split["validation"], transform)
        internal = (np.asarray(test["probs"], dtype=np.float64), np.asarray(test["labels"], dtype=np.int64))
        out = {}
        for external in self.data.external:
            probs, _ = self._predict(network, external.items, transform)
            metrics = evaluate_external_set(
                external, probs, validation, internal, n_resamples=EXTERNAL_BOOTSTRAP_RESAMPLES
            )
            spec = external.spec
            out[external.name] = {
                "positive": external.positive_index,
                "mapped": external.mapped_indices,
                "score_rule": spec.score,
                "metrics": metrics,
                "predictions": {
                    "ids": [image_id(item["image"], external.root) for item in external.items],
                    "labels": [int(item["label"]) for item in external.items],
                    "probs": np.round(probs.astype(np.float64), 6).tolist(),
                    "cases": [_hashed(item["case"]) for item in external.items] if spec.case_column else None,
                    "groups": [item["group"] for item in external.items] if spec.group_column else None,
                },
            }
        return out

    def _sharpness(
        self, network: torch.nn.Module, items: list[dict], transform: Any, seed: int
    ) -> dict[str, float]:
        """The configured sharpness measures on a fixed subset of training images (eval mode)."""
        cfg = self.config.sharpness
        if not cfg["enabled"] or not cfg["measures"]:
            return {}
        from monai_sam import sharpness as sh

        batch_size, batches = int(cfg["batch_size"]), int(cfg["batches"])
        rng = np.random.default_rng(int(self.config.data["split_seed"]))
        subset = [items[i] for i in sorted(rng.permutation(len(items))[: batch_size * batches])]
        loader = self._loader(subset, transform, batch_size)
        loss_fn = torch.nn.CrossEntropyLoss()
        common = {"mode": "eval", "progress": False, "seed": int(seed), "max_batches": batches}
        ascent = {"steps": int(cfg["ascent_steps"]), "random_starts": 0}
        measures = {
            "hessian_top_eigenvalue": lambda: (
                sh.hessian_top_eigenvalue(
                    network, loader, loss_fn, iters=int(cfg["power_iterations"]), **common
                ).eigenvalue
            ),
            "hessian_trace": lambda: (
                sh.hessian_trace(
                    network, loader, loss_fn, probes=int(cfg["power_iterations"]), **common
                ).trace
            ),
            "sam_sharpness": lambda: (
                sh.sam_sharpness(network, loader, loss_fn, rho=float(cfg["rho"]), **common).sharpness
            ),
            "worst_case_sharpness": lambda: (
                sh.worst_case_sharpness(
                    network, loader, loss_fn, rho=float(cfg["rho"]), **ascent, **common
                ).sharpness
            ),
            "adaptive_sharpness": lambda: (
                sh.adaptive_sharpness(network, loader, loss_fn, **ascent, **common).sharpness
            ),
        }
        return {name: float(measures[name]()) for name in cfg["measures"]}


def image_id(path: str | Path, dataset_dir: str | Path) -> str:
    """A stable, anonymous id of an image: a hash of its path relative to ``dataset_dir``.

    Args:
        path: the image file (as listed in the split file).
        dataset_dir: the data set folder (ids do not change when the folder moves).
    """
    import hashlib

    resolved, root = Path(path).resolve(), Path(dataset_dir).resolve()
    rel = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
    return hashlib.sha256(rel.as_posix().encode()).hexdigest()[:16]


def _hashed(text: str) -> str:
    """An anonymous, stable id of a patient id (the first 16 hex digits of its SHA-256)."""
    import hashlib

    return hashlib.sha256(f"case:{text}".encode()).hexdigest()[:16]


def _optional(parser: Any, key: str) -> Any:
    """``parser.get_parsed_content(key)`` or None when the bundle has no such id."""
    try:
        return parser.get_parsed_content(key)
    except KeyError:
        return None


def _read_split(path: Path) -> dict[str, Any]:
    """The validated split dict of one fold."""
    from monai_sam.data import load_split

    return load_split(path)
