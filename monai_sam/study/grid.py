"""The grid of a study: one :class:`RunSpec` per network x optimizer x repeat x fold x seed."""

from __future__ import annotations

from dataclasses import dataclass

from monai_sam.study.config import NetworkSpec, OptimizerSpec, StudyConfig

__all__ = ["RunSpec", "expand_grid"]


@dataclass(frozen=True)
class RunSpec:
    """One training run of a study.

    Attributes:
        network: the network and the bundle that trains it.
        optimizer: the optimizer and its hyperparameters.
        fold: the cross-validation fold used as test set.
        seed: the training seed (weight init, data order, augmentation).
        repeat: which k-fold partition of repeated k-fold (0: the first).
    """

    network: NetworkSpec
    optimizer: OptimizerSpec
    fold: int
    seed: int
    repeat: int = 0

    @property
    def run_id(self) -> str:
        """A file-name-safe id, unique within a study, e.g. ``resnet18__sam__fold0__seed0``."""
        label = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.optimizer.label)
        rep = f"__rep{self.repeat}" if self.repeat else ""  # repeat 0 keeps the ids of plain k-fold
        return f"{self.network.name}__{label}{rep}__fold{self.fold}__seed{self.seed}"

    def train_settings(self, study_train: dict) -> dict:
        """The study's ``train`` section with this network's own settings applied."""
        return {**study_train, **self.network.train}

    def evaluation_settings(self, study_evaluation: dict) -> dict:
        """The study's ``evaluation`` section with this network's own settings applied."""
        return {**study_evaluation, **self.network.evaluation}

    def describe(self) -> dict:
        """The identity fields stored in every run record (``repeat`` only for repeats after the first,
        ``network_evaluation`` only when the network has its own, so records and fingerprints of
        studies without them stay as they were)."""
        return {
            "run_id": self.run_id,
            "network": self.network.name,
            "bundle": self.network.bundle,
            "network_train": dict(self.network.train),
            "optimizer": self.optimizer.label,
            "optimizer_name": self.optimizer.name,
            "rho": self.optimizer.rho,
            "optimizer_kwargs": dict(self.optimizer.kwargs),
            "fold": self.fold,
            "seed": self.seed,
            **({"repeat": self.repeat} if self.repeat else {}),
            **({"network_evaluation": dict(self.network.evaluation)} if self.network.evaluation else {}),
        }


def expand_grid(config: StudyConfig) -> list[RunSpec]:
    """All runs of ``config``, ordered fold-major so early results already pair up across optimizers.

    The order is repeat, fold, seed, network, optimizer: after the first fold every optimizer has a
    result to compare, which makes an interrupted study still useful.
    """
    return [
        RunSpec(network=net, optimizer=opt, fold=fold, seed=seed, repeat=repeat)
        for repeat in range(int(config.data["repeats"]))
        for fold in config.folds
        for seed in config.seeds
        for net in config.networks
        for opt in config.optimizers
    ]
