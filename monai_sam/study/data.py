"""Data of a study: the data set (phantom, BUSI or a folder) and its leakage-free k-fold split files.

The folds are made once per study by :func:`monai_sam.data.make_splits` (stratified, duplicate
groups kept within one fold, label conflicts excluded) and written to ``<output>/splits/fold_{i}.json``;
every run of fold ``i`` trains on that file's ``training`` list, selects its checkpoint on
``validation`` and is tested on ``test``. Reruns reuse the files, so resuming never reshuffles.

Repeated k-fold (``data.repeats: r``): repeat ``j > 0`` is another k-fold partition made with split
seed ``split_seed + j`` and written to ``splits/repeat{j}/fold_{i}.json``.

External test sets (``data.external``) are loaded and checked here too, against the folds' class names,
so a bad declaration fails before any run trains.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from monai_sam.data.external import ExternalSet, load_external_sets
from monai_sam.study.config import StudyConfig

__all__ = ["StudyData", "prepare_study_data", "resolve_dataset_dir"]


@dataclass(frozen=True)
class StudyData:
    """Where a study's data and folds are.

    Attributes:
        dataset_dir: the image directory (class sub-folders).
        split_files: fold index -> split JSON path (the first k-fold partition, repeat 0).
        class_names: class names in label order.
        repeat_files: repeat ``j >= 1`` -> fold index -> split JSON path (repeated k-fold).
        external: the loaded external test sets of ``data.external``.
    """

    dataset_dir: Path
    split_files: dict[int, Path]
    class_names: list[str]
    repeat_files: dict[int, dict[int, Path]] = field(default_factory=dict)
    external: list[ExternalSet] = field(default_factory=list)

    def split_file(self, repeat: int, fold: int) -> Path:
        """The split JSON of ``fold`` in k-fold partition ``repeat``."""
        files = self.split_files if repeat == 0 else self.repeat_files[repeat]
        return files[fold]


def resolve_dataset_dir(config: StudyConfig, output_dir: Path) -> Path:
    """The image directory of ``config.data``; generates the phantom under ``output_dir/data``.

    Raises:
        FileNotFoundError: BUSI not found (name the env var and option) or a missing folder.
    """
    data = config.data
    if data["source"] == "phantom":
        from monai_sam.data import ensure_phantom

        return ensure_phantom(
            output_dir / "data" / "phantom",
            num_classes=int(data["num_classes"]),
            seed=int(data["split_seed"]),
            phantom_kwargs=data.get("phantom") or {},
        )
    if data.get("dataset_dir"):
        path = Path(data["dataset_dir"]).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data.dataset_dir is not a directory: {path}")
        return path
    from monai_sam.data import find_busi_dir

    found = find_busi_dir()
    if found is None:
        raise FileNotFoundError(
            "BUSI not found: set MONAI_SAM_BUSI_DIR, pass --dataset-dir, or set data.dataset_dir to a folder "
            "with benign/, malignant/ and normal/ sub-folders"
        )
    return found


def prepare_study_data(config: StudyConfig, output_dir: str | Path) -> StudyData:
    """Generate or locate the data and write (or reuse) the k-fold split files of ``config``.

    Args:
        config: the study configuration (``data`` section).
        output_dir: the study output directory; split files go to ``splits/``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # several invocations on one output folder: one prepares the data, the others wait and reuse it
    with (out / ".prepare.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            dataset_dir = resolve_dataset_dir(config, out)
            data = config.data
            n_folds = int(data["folds"])
            all_files: dict[int, dict[int, Path]] = {}
            for repeat, seed in enumerate(config.split_seeds):
                split_dir = out / "splits" / (f"repeat{repeat}" if repeat else "")
                files = {i: split_dir / f"fold_{i}.json" for i in range(n_folds)}
                if not all(p.is_file() for p in files.values()):
                    _write_splits(config, dataset_dir, split_dir, seed)
                all_files[repeat] = files
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    classes = list(json.loads(all_files[0][0].read_text())["classes"])
    repeats = {r: f for r, f in all_files.items() if r}
    external = load_external_sets(
        config.data.get("external"), classes, config.data.get("reader_options"), where="data.external"
    )
    return StudyData(dataset_dir, all_files[0], classes, repeat_files=repeats, external=external)


def _write_splits(config: StudyConfig, dataset_dir: Path, split_dir: Path, seed: int) -> None:
    """Make one k-fold partition in a temporary folder and move its files into ``split_dir``.

    A file appears only when complete (``os.replace``), so a reader never sees half a split.
    """
    from monai_sam.data import make_splits

    tmp = split_dir.parent / f".{split_dir.name or 'splits'}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    make_splits(
        dataset_dir,
        num_folds=int(config.data["folds"]),
        seed=seed,
        val_fraction=float(config.data["val_fraction"]),
        num_classes=int(config.data["num_classes"]),
        out_dir=tmp,
        reader_options=config.data.get("reader_options"),
    )
    split_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(tmp.iterdir()):
        os.replace(path, split_dir / path.name)
    shutil.rmtree(tmp, ignore_errors=True)
