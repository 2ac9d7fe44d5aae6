"""Repeated k-fold, corrected t-test, DeLong on pooled out-of-fold predictions, detectable difference."""

import json

import numpy as np
import pytest
from study_fakes import make_config

from monai_sam.study.analysis import compare_to_baseline, flatten_run, pooled_test_predictions
from monai_sam.study.data import prepare_study_data
from monai_sam.study.grid import expand_grid
from monai_sam.study.statistics import corrected_resampled_ttest, delong_paired, minimal_detectable_difference


def test_repeats_expand_the_grid_and_keep_old_ids():
    one = make_config(seeds=[0], folds=[0, 1])
    two = make_config(seeds=[0], folds=[0, 1], data={"source": "phantom", "folds": 5, "repeats": 2})
    assert len(expand_grid(two)) == 2 * len(expand_grid(one))
    ids = {s.run_id for s in expand_grid(two)}
    assert {s.run_id for s in expand_grid(one)} < ids and "resnet18__sam__rep1__fold0__seed0" in ids
    assert two.split_seeds == [0, 1]
    assert one.fingerprint() == two.fingerprint()  # adding repeats resumes the same study
    with pytest.raises(ValueError, match="repeats"):
        make_config(data={"source": "phantom", "repeats": 0})


def test_repeated_splits_are_new_partitions_of_the_same_images(tmp_path):
    config = make_config(
        data={"source": "phantom", "folds": 3, "repeats": 2, "phantom": {"num_per_class": 6}}
    )
    data = prepare_study_data(config, tmp_path)
    tests = {}
    for repeat in (0, 1):
        folds = [json.loads(data.split_file(repeat, f).read_text()) for f in range(3)]
        assert folds[0]["metadata"]["seed"] == config.split_seeds[repeat]
        test_sets = [sorted(i["image"] for i in f["test"]) for f in folds]
        tests[repeat] = test_sets
        every = sorted(i for t in test_sets for i in t)
        assert len(every) == len(set(every))  # each image is tested once per repeat
    assert sorted(i for t in tests[0] for i in t) == sorted(i for t in tests[1] for i in t)
    assert tests[0] != tests[1]
    assert (tmp_path / "splits" / "repeat1" / "fold_2.json").is_file()
    assert not list((tmp_path / "splits").glob(".*tmp*"))


def _records(rng):
    """Two optimizers, 2 repeats x 3 folds x 2 seeds, with test predictions (30 images, 3 classes)."""
    labels = np.repeat([0, 1, 2], 10)
    records = []
    for repeat in (0, 1):
        perm = np.random.default_rng(repeat).permutation(30)
        for fold in range(3):
            test_idx = perm[fold * 10 : (fold + 1) * 10]
            for seed in (0, 1):
                for opt, strength in (("adam", 1.0), ("sam", 1.4)):
                    z = strength * np.eye(3)[labels[test_idx]] + rng.normal(0, 1, (10, 3))
                    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
                    auc = 0.7 + 0.05 * (opt == "sam") + rng.normal(0, 0.02)
                    records.append(
                        {
                            "run_id": f"resnet18__{opt}__rep{repeat}__fold{fold}__seed{seed}",
                            "network": "resnet18",
                            "optimizer": opt,
                            "fold": fold,
                            "seed": seed,
                            **({"repeat": repeat} if repeat else {}),
                            "test": {"macro_auc": auc, "n": 10.0},
                            "train": {"n": 17.0},
                            "test_predictions": {
                                "ids": [f"img{i}" for i in test_idx],
                                "labels": labels[test_idx].tolist(),
                                "probs": probs.tolist(),
                            },
                        }
                    )
    return records


def test_compare_adds_corrected_ttest_delong_and_detectable_difference():
    records = _records(np.random.default_rng(0))
    rows = [flatten_run(r) for r in records]
    config = make_config(
        networks=["resnet18"],
        optimizers=["adam", "sam"],
        seeds=[0, 1],
        folds=[0, 1, 2],
        data={"source": "phantom", "folds": 3, "repeats": 2},
    )
    (comp,) = compare_to_baseline(rows, config, metrics=("test_macro_auc",), records=records)
    assert comp.n == 12 and comp.n_splits == 6
    # the corrected t-test on the seed-averaged difference of each (repeat, fold) split
    auc = {
        (r.get("repeat", 0), r["fold"], r["seed"], r["optimizer"]): r["test"]["macro_auc"] for r in records
    }
    per_split = [
        np.mean([auc[(rep, f, s, "sam")] - auc[(rep, f, s, "adam")] for s in (0, 1)])
        for rep in (0, 1)
        for f in range(3)
    ]
    nb = corrected_resampled_ttest(per_split, 10 / 17)
    assert comp.nb_p == pytest.approx(nb.p_value) and comp.nb_p_holm == pytest.approx(nb.p_value)
    assert comp.mdd == pytest.approx(minimal_detectable_difference(nb.std, 6, 10 / 17, 0.05))
    # DeLong on every image's probabilities averaged over its 2 repeats x 2 seeds
    keys = {(r.get("repeat", 0), r["fold"], r["seed"]) for r in records}
    pooled = {o: pooled_test_predictions(records, "resnet18", o, keys) for o in ("sam", "adam")}
    ids = sorted(pooled["sam"])
    assert len(ids) == 30
    for i in ids[:3]:  # the pooled value is the mean of the 4 predictions of that image
        preds = [
            r["test_predictions"]["probs"][r["test_predictions"]["ids"].index(i)]
            for r in records
            if r["optimizer"] == "sam" and i in r["test_predictions"]["ids"]
        ]
        assert len(preds) == 4 and pooled["sam"][i][1] == pytest.approx(np.mean(preds, axis=0))
    ref = delong_paired(
        [pooled["sam"][i][0] for i in ids],
        np.stack([pooled["sam"][i][1] for i in ids]),
        np.stack([pooled["adam"][i][1] for i in ids]),
    )
    assert comp.delong_n == 30 and comp.delong_p == pytest.approx(ref.p_value)


def test_no_predictions_no_delong():
    records = _records(np.random.default_rng(1))
    for r in records:
        del r["test_predictions"]
    config = make_config(
        networks=["resnet18"], optimizers=["adam", "sam"], data={"source": "phantom", "folds": 3}
    )
    (comp,) = compare_to_baseline([flatten_run(r) for r in records], config, ("test_macro_auc",), records)
    assert comp.delong_n == 0 and np.isnan(comp.delong_p) and not np.isnan(comp.nb_p)
