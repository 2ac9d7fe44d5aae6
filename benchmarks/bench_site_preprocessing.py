"""Preprocessing across sites: train the CNN bundle on BUSI folds, score it in-hospital and on BUS-BRA.

Each variant is one choice of :func:`monai_sam.data.ultrasound_transforms` (``resize``, ``intensity``,
``augmentation``), used for training and, as ONE pipeline, for the internal test fold and the external
images. Every trained model is also scored on the external set with the other resize mode, a paired
comparison on the same weights (BUSI's images are square already, so the resize mode only changes what the
external, portrait images look like).

Run (about 5 to 7 minutes per variant and fold with one thread; the figures of docs/study.md come from it)::

    python benchmarks/bench_site_preprocessing.py --busi ../shared/data/busi --busbra ../shared/data/busbra \\
        --variants standard percentile histogram flip scanner --folds 0 1 2 --threads 1 --json sites.json

The figures chosen on this BUS-BRA copy are optimistic for BUS-BRA itself: pick on one external set, then
report on patients and hospitals that played no part in the choice.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

#: name -> ultrasound_transforms choices (resize is also evaluated both ways on every model).
VARIANTS: dict[str, dict[str, str]] = {
    "standard": {},
    "percentile": {"intensity": "percentile"},
    "histogram": {"intensity": "histogram"},
    "flip": {"augmentation": "flip"},
    "scanner": {"augmentation": "scanner"},
}
BUSBRA = {
    "name": "busbra",
    "id_column": "ID",
    "label_column": "Pathology",
    "case_column": "Case",
    "group_column": "Device",
    "label_map": {"benign": "benign", "malignant": "malignant"},
}


def chain(image_size: int, train: bool, choices: dict[str, str]) -> str:
    """A bundle override building the variant's chain (a ``$`` expression, so it replaces the component)."""
    arguments = ", ".join(f"{key}={value!r}" for key, value in choices.items())
    return f"$monai_sam.data.ultrasound_transforms({image_size}, {train}, {arguments})"


def train_fold(bundle: Path, split_file: Path, work: Path, knobs: dict, choices: dict[str, str]):
    """Train one fold through the bundle's train.json; returns the network (final weights) and the split."""
    from monai.bundle import ConfigWorkflow

    size = int(knobs["image_size"])
    overrides = {
        **knobs,
        "datalist": str(split_file),
        "output_dir": str(work),
        "progress": False,
        "test_at_end": False,
        "train#preprocessing": chain(size, True, choices),
        "validate#preprocessing": chain(size, False, choices),
    }
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.json"),
        workflow_type="train",
        logging_file=False,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    network = workflow.parser.get_parsed_content("network_def")
    classes = workflow.parser.get_parsed_content("class_names")
    workflow.finalize()
    return network.eval(), classes


def score(network, items, choices: dict[str, str], image_size: int) -> np.ndarray:
    """Class probabilities of ``items`` with the variant's evaluation chain."""
    from monai_sam.bundle import predict_probabilities
    from monai_sam.data import ultrasound_transforms

    transform = ultrasound_transforms(image_size, train=False, **choices)
    probs, _ = predict_probabilities(network, items, transform, batch_size=32, num_workers=0, amp=False)
    return probs


def run(args: argparse.Namespace) -> list[dict]:
    """Every variant on every fold; one result row each."""
    from monai_sam.data import load_external_set, make_splits
    from monai_sam.metrics import binary_score, classification_metrics, roc_auc_binary

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "breast_us_cnn"
    knobs = {"image_size": args.image_size, "max_epochs": args.epochs, "sam_optimizer": "adamw", "seed": 0}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_splits(args.busi, num_folds=5, seed=0, out_dir=Path(tmp) / "splits")  # the studies' folds
        splits = {fold: Path(tmp) / "splits" / f"fold_{fold}.json" for fold in range(5)}
        external = None
        for fold in args.folds:
            for name in args.variants:
                choices = VARIANTS[name]
                start = time.perf_counter()
                network, classes = train_fold(
                    bundle, splits[fold], Path(tmp) / f"{name}-{fold}", knobs, choices
                )
                if external is None:
                    spec = {**BUSBRA, "source": args.busbra, "csv": args.busbra_csv}
                    external = load_external_set(spec, classes)
                test = json.loads(Path(splits[fold]).read_text())["test"]
                internal = classification_metrics(
                    [i["label"] for i in test], score(network, test, choices, args.image_size), classes
                )
                row = {"variant": name, "fold": fold, "internal_macro_auc": internal["macro_auc"]}
                for resize in ("pad", "squash"):
                    probs = score(network, external.items, {**choices, "resize": resize}, args.image_size)
                    scores = binary_score(probs, external.positive_index, external.mapped_indices)
                    row[f"external_auc_{resize}"] = roc_auc_binary(external.binary_labels(), scores)
                row["seconds"] = time.perf_counter() - start
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    """Mean (and per-fold values) of every figure per variant."""
    lines = ["variant      internal macro AUC   BUS-BRA AUC (pad)    BUS-BRA AUC (squash)"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        cells = []
        for key in ("internal_macro_auc", "external_auc_pad", "external_auc_squash"):
            values = [r[key] for r in mine]
            cells.append(f"{np.mean(values):.3f} ({' '.join(f'{v:.2f}' for v in values)})".ljust(20))
        lines.append(f"{name.ljust(12)} " + " ".join(cells))
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, run the variants and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busi", default=os.environ.get("MONAI_SAM_BUSI_DIR", "../shared/data/busi"))
    parser.add_argument("--busbra", default=os.environ.get("MONAI_SAM_BUSBRA_DIR", "../shared/data/busbra"))
    parser.add_argument("--busbra-csv", default="bus_data.csv", help="per-image table in --busbra")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args)
    print(summary(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
