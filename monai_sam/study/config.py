"""The study configuration: a YAML schema, its validation and the built-in presets.

A study YAML looks like this (every key but ``optimizers`` and ``networks`` has a default)::

    name: my-study
    data:
      source: busi          # phantom | busi | folder
      dataset_dir: null     # folder of class sub-folders; busi: found via MONAI_SAM_BUSI_DIR
      num_classes: 3        # 3, or 2 for benign versus malignant
      folds: 5              # leakage-free stratified k-fold (duplicates kept in one fold)
      repeats: 1            # repeated k-fold: repeat j uses split seed split_seed + j
      split_seed: 0
      phantom: {num_per_class: 30, image_size: 64}   # only for source: phantom
      reader_options: {frame: 0, nifti_slice: null, crop_region: true}   # DICOM/NIfTI (docs/data.md)
      external:             # external test sets, evaluated by every run (docs/data.md section 7)
        - {name: busbra, source: ../shared/data/busbra, csv: bus_data.csv, id_column: ID,
           label_column: Pathology, case_column: Case, group_column: Device}
    networks: [resnet18, vit_small]          # or {name: resnet18, bundle: breast_us_cnn, train: {...},
                                             #     evaluation: {checkpoint: last}}: per-network settings
    optimizers:
      - adam
      - {name: sam, rho: 0.05}
      - {name: gsam, label: gsam-a0.1, rho: 0.05, alpha: 0.1}   # extra keys go to create_optimizer
      - {name: sam, label: sam-i5, interval: 5}    # efficient modes: interval, start_fraction (late)
      - {name: looksam, k: 5, alpha: 0.7}
    folds: null             # which folds to run (default: all)
    seeds: [0]
    train: {max_epochs: 10, batch_size: 16, lr: 1.0e-4, image_size: 96, amp: false,
            num_workers: 0, overrides: {},     # overrides: raw bundle ids, e.g. {val_interval: 1}
            pretrained: {}}                    # network name -> local weights file (pretrained_path)
    evaluation: {checkpoint: best}            # best (validation key metric) or last
    sharpness: {enabled: true, batches: 2, batch_size: 16, rho: 0.05, power_iterations: 10,
                ascent_steps: 5, measures: [hessian_top_eigenvalue, sam_sharpness, adaptive_sharpness]}
    analysis: {baseline: adam, metric: macro_auc, alpha: 0.05, confidence: 0.95,
               bootstrap_resamples: 10000}
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PRESETS",
    "SHARPNESS_MEASURES",
    "NetworkSpec",
    "OptimizerSpec",
    "StudyConfig",
    "available_presets",
    "load_config",
    "load_preset",
    "preset_dict",
    "read_config_dict",
]

#: Sharpness measures a study can record (functions of :mod:`monai_sam.sharpness`).
SHARPNESS_MEASURES: tuple[str, ...] = (
    "hessian_top_eigenvalue",
    "hessian_trace",
    "sam_sharpness",
    "worst_case_sharpness",
    "adaptive_sharpness",
)

#: Built-in presets (``monai_sam/study/presets/<name>.yaml``).
PRESETS: tuple[str, ...] = ("quick", "busi-cpu", "busi-transfer", "paper")

_TOP_KEYS = {"name", "data", "networks", "optimizers", "folds", "seeds", "train", "evaluation", "sharpness"}
_TOP_KEYS |= {"analysis", "bundles_dir", "continue_on_error"}
_DATA_KEYS = {
    "source",
    "dataset_dir",
    "num_classes",
    "folds",
    "repeats",
    "split_seed",
    "phantom",
    "val_fraction",
}
_DATA_KEYS |= {"reader_options"}  # optional (no default): DICOM frame, NIfTI slice, region crop
_DATA_KEYS |= {"external"}  # optional (no default): external test sets
_TRAIN_KEYS = {
    "max_epochs",
    "batch_size",
    "lr",
    "image_size",
    "amp",
    "num_workers",
    "overrides",
    "pretrained",
}
_SHARP_KEYS = {"enabled", "batches", "batch_size", "rho", "power_iterations", "ascent_steps", "measures"}
_ANALYSIS_KEYS = {"baseline", "metric", "alpha", "confidence", "bootstrap_resamples"}
_EVAL_KEYS = {"checkpoint"}
_SOURCES = ("phantom", "busi", "folder")


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    """Raise a ValueError naming unknown keys (typos must not be silently ignored)."""
    unknown = set(section) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in {where}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the grid.

    Attributes:
        name: a name ``monai_sam.optimizers.create_optimizer`` knows (``adam``, ``sam``, ...).
        label: the name used in run ids and reports (defaults to ``name``; must be unique).
        rho: neighbourhood radius for sharpness-aware methods (``None``: the bundle default).
        kwargs: further method hyperparameters passed to ``create_optimizer`` (``alpha``, ``gamma``,
            ``interval``...); ``start_fraction`` (late-phase mode) goes to the bundle's iteration function.
    """

    name: str
    label: str
    rho: float | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, item: str | dict, where: str) -> OptimizerSpec:
        """Build from ``"sam"`` or ``{name: sam, label: ..., rho: ..., **kwargs}``."""
        if isinstance(item, str):
            return cls(name=item.lower(), label=item.lower())
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{where}: an optimizer is a name or a mapping with a 'name' key, got {item!r}")
        rest = dict(item)
        name = str(rest.pop("name")).lower()
        label = str(rest.pop("label", name))
        rho = rest.pop("rho", None)
        return cls(name=name, label=label, rho=None if rho is None else float(rho), kwargs=rest)


@dataclass(frozen=True)
class NetworkSpec:
    """One network of the grid.

    Attributes:
        name: a ``monai_sam.networks.build_network`` name (``resnet18``, ``vit_small``...).
        bundle: which bundle trains it, or a path to a bundle directory; by default
            ``breast_us_cnn`` for the CNN family and ``breast_us_vit`` for transformers.
        train: training settings of this network that replace the study's ``train`` values
            (e.g. ``{lr: 3.0e-4}``: transformers trained from scratch often need a smaller rate).
        evaluation: evaluation settings of this network that replace the study's ``evaluation``
            values (e.g. ``{checkpoint: last}`` for a network whose best-validation epoch is an
            early, under-trained one).
    """

    name: str
    bundle: str
    train: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, item: str | dict, where: str) -> NetworkSpec:
        """Build from ``"resnet18"`` or ``{name: resnet18, bundle: breast_us_cnn, train: {lr: 1e-4}}``."""
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{where}: a network is a name or a mapping with a 'name' key, got {item!r}")
        _check_keys(item, {"name", "bundle", "train", "evaluation"}, where)
        train = dict(item.get("train") or {})
        _check_keys(train, _TRAIN_KEYS, f"{where}: train")
        evaluation = dict(item.get("evaluation") or {})
        _check_evaluation(evaluation, f"{where}: evaluation")
        name = str(item["name"]).lower()
        bundle = item.get("bundle")
        if bundle is None:
            from monai_sam.networks import network_spec  # raises a ValueError listing known names

            try:
                family = network_spec(name).family
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            bundle = "breast_us_cnn" if family == "cnn" else "breast_us_vit"
        return cls(name=name, bundle=str(bundle), train=train, evaluation=evaluation)


@dataclass
class StudyConfig:
    """A validated study configuration (see the module docstring for the YAML form)."""

    name: str
    networks: list[NetworkSpec]
    optimizers: list[OptimizerSpec]
    seeds: list[int]
    folds: list[int]
    data: dict[str, Any]
    train: dict[str, Any]
    evaluation: dict[str, Any]
    sharpness: dict[str, Any]
    analysis: dict[str, Any]
    bundles_dir: str | None = None
    continue_on_error: bool = False

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<dict>") -> StudyConfig:
        """Validate a parsed YAML mapping; every error names ``source`` and the offending key."""
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: a study config must be a mapping, got {type(raw).__name__}")
        _check_keys(raw, _TOP_KEYS, source)
        for key in ("networks", "optimizers"):
            if not raw.get(key):
                raise ValueError(f"{source}: '{key}' must be a non-empty list")
        data = _section(raw, "data", _DATA_KEYS, source, _DATA_DEFAULTS)
        if data["source"] not in _SOURCES:
            raise ValueError(f"{source}: data.source must be one of {_SOURCES}, got {data['source']!r}")
        if data.get("reader_options") is not None:
            from monai_sam.data.image_reading import ReadOptions

            try:
                ReadOptions.coerce(data["reader_options"])
            except ValueError as err:
                raise ValueError(f"{source}: data.reader_options: {err}") from err
        _parse_external(data, source)
        if data["source"] == "folder" and not data.get("dataset_dir"):
            raise ValueError(f"{source}: data.source 'folder' needs data.dataset_dir")
        if int(data["num_classes"]) not in (2, 3):
            raise ValueError(f"{source}: data.num_classes must be 3 or 2, got {data['num_classes']}")
        n_folds = int(data["folds"])
        if n_folds < 2:
            raise ValueError(
                f"{source}: data.folds must be at least 2 (k-fold cross-validation), got {n_folds}"
            )
        if int(data["repeats"]) < 1:
            raise ValueError(f"{source}: data.repeats must be at least 1, got {data['repeats']}")
        folds = list(range(n_folds)) if raw.get("folds") is None else [int(f) for f in raw["folds"]]
        bad = [f for f in folds if not 0 <= f < n_folds]
        if bad:
            raise ValueError(f"{source}: folds {bad} outside range(data.folds={n_folds})")
        optimizers = [
            OptimizerSpec.parse(o, f"{source}: optimizers[{i}]") for i, o in enumerate(raw["optimizers"])
        ]
        labels = [o.label for o in optimizers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{source}: optimizer labels must be unique, got {labels}; add 'label:' keys")
        networks = [NetworkSpec.parse(n, f"{source}: networks[{i}]") for i, n in enumerate(raw["networks"])]
        analysis = _section(raw, "analysis", _ANALYSIS_KEYS, source, _ANALYSIS_DEFAULTS)
        if analysis["baseline"] not in labels:
            raise ValueError(
                f"{source}: analysis.baseline {analysis['baseline']!r} is not an optimizer label {labels}"
            )
        sharpness = _section(raw, "sharpness", _SHARP_KEYS, source, _SHARP_DEFAULTS)
        unknown = [m for m in sharpness["measures"] if m not in SHARPNESS_MEASURES]
        if unknown:
            raise ValueError(
                f"{source}: unknown sharpness measure(s) {unknown}; available: {list(SHARPNESS_MEASURES)}"
            )
        _check_optimizer_names(optimizers, source)
        evaluation = _section(raw, "evaluation", _EVAL_KEYS, source, {"checkpoint": "best"})
        _check_evaluation(evaluation, f"{source}: evaluation")
        return cls(
            name=str(raw.get("name", "study")),
            networks=networks,
            optimizers=optimizers,
            seeds=[int(s) for s in raw.get("seeds", [0])],
            folds=folds,
            data=data,
            train=_section(raw, "train", _TRAIN_KEYS, source, _TRAIN_DEFAULTS),
            evaluation=evaluation,
            sharpness=sharpness,
            analysis=analysis,
            bundles_dir=raw.get("bundles_dir"),
            continue_on_error=bool(raw.get("continue_on_error", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain mapping that :meth:`from_dict` accepts again."""
        out = asdict(self)
        out["networks"] = [
            {
                "name": n.name,
                "bundle": n.bundle,
                **({"train": n.train} if n.train else {}),
                **({"evaluation": n.evaluation} if n.evaluation else {}),
            }
            for n in self.networks
        ]
        out["optimizers"] = [
            {"name": o.name, "label": o.label, **({"rho": o.rho} if o.rho is not None else {}), **o.kwargs}
            for o in self.optimizers
        ]
        return out

    @property
    def split_seeds(self) -> list[int]:
        """The split seed of every k-fold repeat: ``split_seed + j`` for repeat ``j``."""
        return [int(self.data["split_seed"]) + j for j in range(int(self.data["repeats"]))]

    def fingerprint(self) -> str:
        """Hash of everything that changes a run's result (data, training, evaluation, sharpness).

        An output directory of another fingerprint is refused; within one, each run is also checked
        against its own cell's settings (see :func:`monai_sam.study.runner.run_fingerprint`).
        ``data.repeats`` is left out: adding repeats to a study only adds runs, like adding seeds.
        ``data.external`` is in it when a study has external sets (their results are part of every run),
        and absent otherwise, so studies without external sets keep their fingerprints.
        """
        keys = ("data", "train", "evaluation", "sharpness")
        payload_dict = {k: self.to_dict()[k] for k in keys}
        payload_dict["data"].pop("repeats", None)
        payload = json.dumps(payload_dict, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


_DATA_DEFAULTS: dict[str, Any] = {
    "source": "phantom",
    "dataset_dir": None,
    "num_classes": 3,
    "folds": 5,
    "repeats": 1,
    "split_seed": 0,
    "val_fraction": 0.15,
    "phantom": {"num_per_class": 30, "image_size": 64},
}
_TRAIN_DEFAULTS: dict[str, Any] = {
    "max_epochs": 10,
    "batch_size": 16,
    "lr": 1.0e-4,
    "image_size": 96,
    "amp": False,
    "num_workers": 0,
    "overrides": {},
    "pretrained": {},
}
_SHARP_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "batches": 2,
    "batch_size": 16,
    "rho": 0.05,
    "power_iterations": 10,
    "ascent_steps": 5,
    "measures": ["hessian_top_eigenvalue", "sam_sharpness", "adaptive_sharpness"],
}
_ANALYSIS_DEFAULTS: dict[str, Any] = {
    "baseline": "adam",
    "metric": "macro_auc",
    "alpha": 0.05,
    "confidence": 0.95,
    "bootstrap_resamples": 10000,
}


def _parse_external(data: dict[str, Any], source: str) -> None:
    """Validate ``data.external`` in place: normalised declarations, or no key when there are none."""
    if not data.get("external"):
        data.pop("external", None)  # an empty list is no external set (and no change of fingerprint)
        return
    from monai_sam.data.external import parse_external_specs

    specs = parse_external_specs(data["external"], f"{source}: data.external")
    data["external"] = [spec.to_dict() for spec in specs]


def _check_optimizer_names(optimizers: list[OptimizerSpec], source: str) -> None:
    """Reject optimizer names ``create_optimizer`` does not know (before any training starts)."""
    try:
        from monai_sam.optimizers import available_optimizers
    except ImportError:  # optimizer registry not importable: the bundle reports bad names at run time
        return
    known = set(available_optimizers())
    bad = [o.name for o in optimizers if o.name not in known]
    if bad:
        raise ValueError(f"{source}: unknown optimizer(s) {bad}; available: {sorted(known)}")


def _check_evaluation(section: dict, where: str) -> None:
    """Reject unknown evaluation keys and a checkpoint other than ``best`` or ``last``."""
    _check_keys(section, _EVAL_KEYS, where)
    if "checkpoint" in section and section["checkpoint"] not in ("best", "last"):
        raise ValueError(f"{where}: checkpoint must be 'best' or 'last', got {section['checkpoint']!r}")


def _section(raw: dict, key: str, allowed: set[str], source: str, defaults: dict) -> dict[str, Any]:
    """Merge one config section over its defaults, rejecting unknown keys."""
    given = raw.get(key) or {}
    if not isinstance(given, dict):
        raise ValueError(f"{source}: '{key}' must be a mapping, got {given!r}")
    _check_keys(given, allowed, f"{source}: {key}")
    merged = copy.deepcopy(defaults)
    merged.update(given)
    return merged


def read_config_dict(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a study YAML file (validate it with :meth:`StudyConfig.from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config not found: {path}")
    with path.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a study config must be a YAML mapping")
    return raw


def preset_dict(name: str) -> dict[str, Any]:
    """The raw mapping of a built-in preset (``quick``, ``busi-cpu`` or ``paper``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown study preset {name!r}; available: {list(PRESETS)}")
    text = resources.files("monai_sam.study").joinpath("presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    return StudyConfig.from_dict(read_config_dict(path), source=str(path))


def available_presets() -> tuple[str, ...]:
    """Names accepted by :func:`load_preset`."""
    return PRESETS


def load_preset(name: str) -> StudyConfig:
    """Load a built-in preset (``quick``, ``busi-cpu`` or ``paper``)."""
    return StudyConfig.from_dict(preset_dict(name), source=f"preset {name!r}")
