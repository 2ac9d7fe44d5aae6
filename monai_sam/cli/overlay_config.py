"""Build the overlay config that adds a sharpness-aware method to an existing MONAI bundle.

``monai-sam overlay`` reads a bundle's train config(s), merged as ``monai.bundle`` merges a
``--config_file`` list, finds the one ``SupervisedTrainer`` and the optimizer component it uses, and
writes a small config to put LAST in that list::

    python -m monai.bundle run --config_file "['configs/train.json', 'sam.yaml']"

The overlay only sets nested keys, so everything else stays the bundle's:

- ``<optimizer>#_target_`` becomes :func:`monai_sam.optimizers.wrap_optimizer`, and the bundle's own
  target moves to ``<optimizer>#sam_base``: the bundle's ``params``, ``lr``, ``weight_decay``, param
  groups, ... are left in place and build the same base optimizer as before (``--optimizer#lr`` and the
  bundle's ``multi_gpu_train`` overrides still apply to it). The LR scheduler, checkpoints and any
  other ``@optimizer`` reference now see the wrapper, which shares the base's param groups and state.
- ``<trainer>#iteration_update`` becomes ``@sam_iteration``, a
  :class:`~monai_sam.engines.SharpnessAwareIteration` that passes the network output to the loss
  unchanged, as MONAI's trainer does.
- The top-level ids ``sam_optimizer``, ``sam_rho`` and ``sam_iteration`` (prefixed, checked not to
  exist in the bundle) can be overridden on the command line: ``--sam_optimizer asam --sam_rho 0.5``;
  ``--sam_optimizer none`` runs the bundle's own optimizer, unwrapped (the A/B baseline).
- Nothing else: the bundle's precision (``amp``, ``amp_kwargs``), data, handlers and run ids stay its own.

The functions here only read and build dicts; :func:`write_overlay` writes the file.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator
from monai.bundle.reference_resolver import ReferenceResolver
from monai.utils.module import locate

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer
from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.registry import canonical_name, find_method
from monai_sam.optimizers.wrapping import wrapping_problem

__all__ = [
    "OVERLAY_IDS",
    "BundleTraining",
    "OverlayError",
    "build_overlay",
    "default_rho",
    "find_run_ids",
    "find_training",
    "format_overlay",
    "load_bundle_config",
    "run_command",
    "write_overlay",
]

#: top-level ids the overlay adds (each must be absent from the bundle).
OVERLAY_IDS: tuple[str, ...] = ("sam_optimizer", "sam_rho", "sam_iteration")
#: ``_target_`` spellings of MONAI's ``SupervisedTrainer``.
SUPERVISED_TRAINER_TARGETS = frozenset(
    {"SupervisedTrainer", "monai.engines.SupervisedTrainer", "monai.engines.trainer.SupervisedTrainer"}
)
WRAPPER_TARGET = "monai_sam.optimizers.wrap_optimizer"
ITERATION_TARGET = "monai_sam.engines.SharpnessAwareIteration"
TRAINER_TARGET = "monai_sam.engines.SharpnessAwareTrainer"
#: keys the overlay adds to the bundle's optimizer component.
WRAPPER_KEYS: tuple[str, ...] = ("sam_method", "sam_base", "sam_hyperparameters")
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_PLAIN_REFERENCE = re.compile(r"^@[\w:]+$")


class OverlayError(ValueError):
    """The bundle config cannot be overlaid safely; the message names what was found."""


@dataclass(frozen=True)
class BundleTraining:
    """Where a bundle's training lives in its merged config.

    Attributes:
        trainer_id: id of the ``SupervisedTrainer`` component (``"train#trainer"`` or ``"trainer"``).
        optimizer_id: id of the optimizer component the trainer uses (``"optimizer"``, or the
            trainer's own ``"...#optimizer"`` when defined inline).
        optimizer_target: the optimizer's ``_target_`` as written in the bundle (``"Novograd"``).
        iteration_update: the trainer's ``iteration_update`` config, None when absent.
        optimizer_class: the class ``optimizer_target`` names, None when it cannot be imported here.
        optimizer_kwargs: the optimizer's other keys, plain ``@id`` references followed to their value.
        run_ids: the top-level ids whose expressions run the trainer (``"run"``, ``"training"``), ``run``
            first; empty when none was found.
    """

    trainer_id: str
    optimizer_id: str
    optimizer_target: Any
    iteration_update: Any = None
    optimizer_class: Any = None
    optimizer_kwargs: dict = field(default_factory=dict)
    run_ids: tuple[str, ...] = ()


def _display(id_: str) -> str:
    return id_.replace("::", "#")


def _normalize(id_: str) -> str:
    return ReferenceResolver.normalize_id(id_)


def load_bundle_config(files: Sequence[str | Path]) -> dict:
    """Merge config files as ``monai.bundle run --config_file [...]`` does (later files win).

    Args:
        files: JSON or YAML config paths, in ``--config_file`` order.

    Raises:
        FileNotFoundError: a path that does not exist.
        OverlayError: a path with another suffix, or a file that is not a mapping.
    """
    if not files:
        raise OverlayError("no config file given.")
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise OverlayError(f"{path}: not a bundle config (expected one of {', '.join(CONFIG_SUFFIXES)}).")
        content = ConfigParser.load_config_file(str(path))
        if not isinstance(content, dict):
            raise OverlayError(f"{path}: a bundle config must be a mapping, got {type(content).__name__}.")
    return ConfigParser.load_config_files([str(f) for f in files])


def _components(node: Any, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """Every dict with a ``_target_`` in the config tree, with its id (``::``-separated)."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield prefix, node
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        yield from _components(value, f"{prefix}::{key}" if prefix else str(key))


def _target_name(target: Any) -> str:
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else ""


def _resolve_class(target: Any) -> Any:
    """The object a ``_target_`` string names, found as MONAI's ConfigComponent finds it; None if not."""
    if not isinstance(target, str) or target.startswith("$"):
        return None
    modules = ComponentLocator().get_component_module_name(target)
    candidates = [modules] if isinstance(modules, str) else list(modules or [])
    for module in candidates:
        found = locate(f"{module}.{target}")
        if found is not None:
            return found
    try:
        return locate(target)
    except Exception:  # an unimportable path (a bundle's own ``scripts`` module): checked at run time
        return None


def _is_disabled(node: dict) -> bool:
    return node.get("_disabled_") in (True, "true", "True")


def _find_trainer(config: dict) -> tuple[str, dict]:
    trainers, others = [], []
    for id_, node in _components(config):
        target = node["_target_"]
        if _is_disabled(node):
            continue
        if target in SUPERVISED_TRAINER_TARGETS:
            trainers.append((id_, node))
        elif _target_name(target).endswith("Trainer"):
            others.append(f"{_display(id_)} ({target})")
    if len(trainers) == 1:
        return trainers[0]
    found = [f"{_display(i)} ({n['_target_']})" for i, n in trainers]
    detail = f"found {len(trainers)} SupervisedTrainer components {found}" if trainers else "found none"
    if others:
        detail += f"; other trainers: {others}"
    raise OverlayError(f"expected exactly one SupervisedTrainer component, {detail}.")


def _optimizer_like(config: dict) -> list[str]:
    hits = []
    for id_, node in _components(config):
        name = _display(id_).rsplit("#", 1)[-1]
        if "optim" in name.lower() or "optim" in str(node["_target_"]).lower():
            hits.append(f"{_display(id_)} ({node['_target_']})")
    return hits


class _MissingReference(LookupError):
    """A plain ``@id`` reference to an id that the config does not have."""


def _follow(parser: ConfigParser, here: str, value: Any) -> tuple[str, Any]:
    """Follow plain ``@id`` references (relative ones too) from ``value`` at id ``here`` to a value that is
    not one; returns that value and its id (no expression is evaluated)."""
    seen: list[str] = []
    while isinstance(value, str) and _PLAIN_REFERENCE.match(_normalize(value)):
        ref = _normalize(ConfigParser.resolve_relative_ids(here, value)[1:])
        if ref in seen or len(seen) > 16:
            break
        seen.append(ref)
        missing = object()
        try:
            value = parser.get(ref, missing)
        except (KeyError, IndexError, ValueError, TypeError):
            value = missing
        if value is missing:
            raise _MissingReference(ref)
        here = ref
    return here, value


def _find_optimizer(config: dict, trainer_id: str, trainer: dict) -> tuple[str, dict]:
    here = f"{trainer_id}::optimizer"
    try:
        here, value = _follow(ConfigParser(config), here, trainer.get("optimizer"))
    except _MissingReference as missing:
        raise OverlayError(
            f"the trainer {_display(trainer_id)} uses optimizer '@{_display(str(missing))}', "
            "which is not in the config."
        ) from None
    if isinstance(value, dict) and "_target_" in value:
        return here, value
    found = _optimizer_like(config)
    raise OverlayError(
        f"cannot identify the optimizer of the trainer {_display(trainer_id)}: its 'optimizer' is "
        f"{trainer.get('optimizer')!r}, not a reference '@id' to an optimizer component with a _target_ "
        f"(optimizer-like components found: {found or 'none'})."
    )


def find_training(config: dict) -> BundleTraining:
    """Locate the ``SupervisedTrainer`` of a merged bundle config and the optimizer it uses.

    Args:
        config: a merged, unparsed bundle config (see :func:`load_bundle_config`).

    Raises:
        OverlayError: not exactly one enabled ``SupervisedTrainer``; an optimizer that is not a
            component (an expression, a macro, a missing id); an optimizer or trainer that is already
            sharpness-aware; an optimizer built in ``_mode_`` other than ``default``; a bundle that
            already defines one of :data:`OVERLAY_IDS`.
    """
    clash = [i for i in OVERLAY_IDS if i in config]
    if clash:
        raise OverlayError(f"the bundle already defines the top-level id(s) {clash} that the overlay adds.")
    for id_, node in _components(config):
        target = node["_target_"]
        if target in (TRAINER_TARGET, "monai_sam.engines.trainer.SharpnessAwareTrainer"):
            raise OverlayError(f"{_display(id_)} is already a SharpnessAwareTrainer; nothing to overlay.")
    trainer_id, trainer = _find_trainer(config)
    optimizer_id, optimizer = _find_optimizer(config, trainer_id, trainer)
    target = optimizer["_target_"]
    where = f"the optimizer {_display(optimizer_id)} ({target})"
    if optimizer.get("_mode_", "default") != "default":
        raise OverlayError(f"{where} has _mode_ {optimizer['_mode_']!r}; only 'default' builds an optimizer.")
    taken = [k for k in WRAPPER_KEYS if k in optimizer]
    if taken:
        raise OverlayError(f"{where} already has the key(s) {taken} that the overlay adds.")
    cls = _resolve_class(target)
    if target == WRAPPER_TARGET or _target_name(target) in ("create_optimizer", "wrap_optimizer"):
        raise OverlayError(f"{where} is already built by monai_sam; nothing to overlay.")
    if cls is not None:
        from torch.optim import Optimizer

        if not (inspect.isclass(cls) and issubclass(cls, Optimizer)):
            raise OverlayError(f"{where} does not name a torch.optim.Optimizer class.")
        if issubclass(cls, SharpnessAwareOptimizer):
            raise OverlayError(f"{where} is already sharpness-aware; nothing to overlay.")
    return BundleTraining(
        trainer_id=_display(trainer_id),
        optimizer_id=_display(optimizer_id),
        optimizer_target=target,
        iteration_update=trainer.get("iteration_update"),
        optimizer_class=cls,
        optimizer_kwargs=_known_kwargs(config, optimizer_id, optimizer),
        run_ids=find_run_ids(config, _display(trainer_id)),
    )


def _known_kwargs(config: dict, optimizer_id: str, optimizer: dict) -> dict[str, Any]:
    """The optimizer's arguments with plain ``@id`` references followed (expressions stay as written)."""
    parser = ConfigParser(config)
    out = {}
    for key, value in optimizer.items():
        if key.startswith("_") or key == "params":
            continue
        try:
            out[key] = _follow(parser, f"{optimizer_id}::{key}", value)[1]
        except _MissingReference:
            out[key] = value
    return out


def find_run_ids(config: dict, trainer_id: str) -> tuple[str, ...]:
    """The top-level ids whose expressions run the trainer, ``run`` first.

    ``python -m monai.bundle run ID`` executes the expressions under ``ID`` (default ``run``); zoo bundles
    name it ``run`` (spleen) or ``training`` (ventricular_short_axis_3label). An id counts when one of its
    ``$`` expressions calls ``@<trainer_id>.run()``. metadata.json names no run id.

    Args:
        config: the merged bundle config.
        trainer_id: the trainer's id, ``#``-separated (``"train#trainer"``).
    """
    path = "(?:#|::)".join(re.escape(part) for part in trainer_id.split("#"))
    runs_trainer = re.compile(rf"@{path}\s*\.\s*run\s*\(")
    found = []
    for key, value in config.items():
        expressions = value if isinstance(value, list) else [value]
        if any(isinstance(e, str) and e.startswith("$") and runs_trainer.search(e) for e in expressions):
            found.append(key)
    return tuple(sorted(found, key=lambda key: key != "run"))


def run_command(files: Sequence[str], run_id: str | None) -> str:
    """The ``monai.bundle run`` command line for ``files`` (the overlay last) and the bundle's run id.

    Args:
        files: the ``--config_file`` list.
        run_id: the id to run; ``"run"`` (MONAI's default) and None are left out of the command.
    """
    listing = repr([str(f) for f in files])
    quoted = f'"{listing}"' if not set('"$`\\') & set(listing) else shlex.quote(listing)
    id_part = f" {run_id}" if run_id not in (None, "run") else ""
    return f"python -m monai.bundle run{id_part} --config_file {quoted}"


def _trainer_composes() -> bool:
    """True when ``SharpnessAwareTrainer`` takes an ``iteration_update`` to run its passes inside."""
    return "iteration_update" in inspect.signature(SharpnessAwareTrainer.__init__).parameters


def _pass_output_unchanged(cls: type) -> dict[str, Any]:
    """``output_index: None`` (MONAI's semantics: the full network output to the loss) where supported."""
    return {"output_index": None} if "output_index" in inspect.signature(cls.__init__).parameters else {}


def default_rho(method: str) -> float:
    """The method's own default ``rho`` (SAM's for ``"none"`` and plain names: a later ``--sam_optimizer``).

    Args:
        method: a sharpness-aware method name, ``"none"`` or a plain optimizer name.
    """
    info = find_method(method) or find_method("sam")
    assert info is not None  # SAM is always registered
    return info.default_rho


def build_overlay(training: BundleTraining, method: str, rho: float | None = None) -> dict[str, Any]:
    """The overlay config (a dict of top-level and ``#``-nested ids) for a located training.

    When the trainer has no ``iteration_update`` the overlay installs ``@sam_iteration`` there. When it
    has one (an interaction loop such as DeepEdit's), it replaces the trainer's ``_target_`` with
    ``SharpnessAwareTrainer`` if that trainer composes with an ``iteration_update``, and refuses otherwise.

    The method is checked against the bundle's optimizer here, when the overlay is written (see
    :func:`~monai_sam.optimizers.wrapping.wrapping_problem`): bSAM, whose own update would replace the
    bundle's optimizer, and MSAM over an optimizer without a known momentum are refused. ``"none"`` (or the
    plain name of the bundle's optimizer class) writes the same overlay set to run the bundle's own
    optimizer; ``--sam_optimizer`` switches between the two at run time.

    Args:
        training: what :func:`find_training` found.
        method: a sharpness-aware method name (``"sam"``, ``"asam"``, ...), ``"none"``, or the plain
            name of the bundle's optimizer (``"adam"``, ``"adamw"``, ``"sgd"``).
        rho: neighbourhood size; None for the method's default.

    Raises:
        OverlayError: unknown method, a method that cannot run over the bundle's optimizer, negative rho,
            or an ``iteration_update`` that cannot be composed.
    """
    rho = default_rho(method) if rho is None else float(rho)
    if not rho >= 0:
        raise OverlayError(f"--rho must be >= 0, got {rho}.")
    problem = wrapping_problem(method, training.optimizer_class, training.optimizer_kwargs, {"rho": rho})
    if problem is not None:
        raise OverlayError(f"--optimizer {method}: {problem}")
    opt, trainer = training.optimizer_id, training.trainer_id
    overlay: dict[str, Any] = {
        "sam_optimizer": canonical_name(method),
        "sam_rho": rho,
        f"{opt}#_target_": WRAPPER_TARGET,
        f"{opt}#sam_method": "@sam_optimizer",
        f"{opt}#sam_base": {"_target_": training.optimizer_target, "_mode_": "callable"},
        f"{opt}#sam_hyperparameters": {"rho": "@sam_rho"},
    }
    if training.iteration_update is None:
        overlay["sam_iteration"] = {
            "_target_": ITERATION_TARGET,
            **_pass_output_unchanged(SharpnessAwareIteration),
        }
        overlay[f"{trainer}#iteration_update"] = "@sam_iteration"
    elif _trainer_composes():
        overlay[f"{trainer}#_target_"] = TRAINER_TARGET
        for key, value in _pass_output_unchanged(SharpnessAwareTrainer).items():
            overlay[f"{trainer}#{key}"] = value
    else:
        raise OverlayError(
            f"the trainer {trainer} already sets iteration_update={training.iteration_update!r}; this "
            "monai_sam's SharpnessAwareTrainer cannot run its passes inside another iteration_update, so "
            "the overlay refuses rather than replace it."
        )
    return overlay


def write_overlay(overlay: dict[str, Any], path: str | Path, header: Sequence[str] = ()) -> Path:
    """Write the overlay as YAML (``.yaml``/``.yml``, with ``header`` as comments) or JSON (``.json``).

    Args:
        overlay: what :func:`build_overlay` returned.
        path: the file to write.
        header: comment lines for a YAML file (ignored for JSON, which has no comments).

    Raises:
        OverlayError: another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise OverlayError(f"--out {path}: expected a {', '.join(CONFIG_SUFFIXES)} file name.")
    path.write_text(format_overlay(overlay, suffix, header))
    return path


def format_overlay(overlay: dict[str, Any], suffix: str = ".yaml", header: Sequence[str] = ()) -> str:
    """The overlay's text as YAML (with ``header`` comments) or JSON (``suffix == ".json"``).

    Args:
        overlay: what :func:`build_overlay` returned.
        suffix: ``".json"``, ``".yaml"`` or ``".yml"``.
        header: comment lines for YAML.
    """
    if suffix == ".json":
        return json.dumps(overlay, indent=4) + "\n"
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.safe_dump(overlay, sort_keys=False, default_flow_style=False)
