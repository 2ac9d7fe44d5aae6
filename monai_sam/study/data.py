"""Data of a study: the data set (phantom, BUSI or a folder) and its leakage-free k-fold split files.

The folds are made once per study by :func:`monai_sam.data.make_splits` (stratified, duplicate
groups kept within one fold, label conflicts excluded) and written to ``<output>/splits/fold_{i}.json``;
every run of fold ``i`` trains on that file's ``training`` list, selects its checkpoint on
``validation`` and is tested on ``test``. Reruns reuse the files, so resuming never reshuffles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from monai_sam.study.config import StudyConfig

__all__ = ["StudyData", "prepare_study_data", "resolve_dataset_dir"]


@dataclass(frozen=True)
class StudyData:
    """Where a study's data and folds are.

    Attributes:
        dataset_dir: the image directory (class sub-folders).
        split_files: fold index -> split JSON path.
        class_names: class names in label order.
    """

    dataset_dir: Path
    split_files: dict[int, Path]
    class_names: list[str]


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
    dataset_dir = resolve_dataset_dir(config, out)
    data = config.data
    split_dir = out / "splits"
    n_folds = int(data["folds"])
    files = {i: split_dir / f"fold_{i}.json" for i in range(n_folds)}
    if not all(p.is_file() for p in files.values()):
        from monai_sam.data import make_splits

        make_splits(
            dataset_dir,
            num_folds=n_folds,
            seed=int(data["split_seed"]),
            val_fraction=float(data["val_fraction"]),
            num_classes=int(data["num_classes"]),
            out_dir=split_dir,
            reader_options=data.get("reader_options"),
        )
    classes = json.loads(files[0].read_text())["classes"]
    return StudyData(dataset_dir=dataset_dir, split_files=files, class_names=list(classes))
