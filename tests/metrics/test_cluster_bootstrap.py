"""The patient-level (cluster) bootstrap: a worked example, determinism, and the image bootstrap as a case."""

import numpy as np
import pytest

from monai_sam.metrics import cluster_bootstrap
from monai_sam.study.statistics import bootstrap_mean_ci


def test_worked_example_resamples_whole_patients():
    # Patient A has one image of value 0, patient B three images of value 1. A resample draws two
    # patients: AA (p = 1/4) gives mean 0, AB or BA (p = 1/2) gives (0 + 3) / 4 = 0.75, BB (p = 1/4) gives 1.
    # An image-level bootstrap would also give 0.25 and 0.5; keeping patients whole never does.
    values = np.array([0.0, 1.0, 1.0, 1.0])
    cases = ["A", "B", "B", "B"]
    boot = cluster_bootstrap(cases, lambda idx: {"mean": values[idx].mean()}, n_resamples=4000, seed=3)
    reps = boot.replicates["mean"]
    assert set(np.round(reps, 12)) == {0.0, 0.75, 1.0}
    shares = [np.mean(reps == v) for v in (0.0, 0.75, 1.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)  # 4000 draws: sd of a share < 0.008
    assert boot.estimates["mean"] == 0.75 and boot.n_clusters == 2
    assert boot.intervals["mean"] == (0.0, 1.0) and boot.valid["mean"] == 4000


def test_deterministic_for_a_seed_and_undefined_replicates_dropped():
    rng = np.random.default_rng(0)
    values = rng.normal(size=30)
    cases = [f"p{i // 3}" for i in range(30)]

    def stat(idx):
        return {"mean": values[idx].mean(), "undefined_sometimes": np.nan if idx[0] < 3 else 1.0}

    first = cluster_bootstrap(cases, stat, n_resamples=200, seed=7)
    again = cluster_bootstrap(cases, stat, n_resamples=200, seed=7)
    other = cluster_bootstrap(cases, stat, n_resamples=200, seed=8)
    assert np.array_equal(first.replicates["mean"], again.replicates["mean"])
    assert not np.array_equal(first.replicates["mean"], other.replicates["mean"])
    assert 0 < first.valid["undefined_sometimes"] < 200
    assert first.intervals["undefined_sometimes"] == (1.0, 1.0)


def test_one_image_per_cluster_is_the_image_bootstrap():
    # ids sort in image order, so every draw picks the same images as bootstrap_mean_ci's draws
    values = np.random.default_rng(1).uniform(size=25)
    cases = [f"{i:03d}" for i in range(25)]
    boot = cluster_bootstrap(cases, lambda idx: {"m": values[idx].mean()}, n_resamples=500, seed=4)
    mean, low, high = bootstrap_mean_ci(values, 0.95, n_resamples=500, seed=4)
    assert boot.estimates["m"] == pytest.approx(mean)
    assert boot.intervals["m"] == pytest.approx((low, high))


def test_cluster_images_stay_together():
    cases = np.array(["a", "b", "b", "c", "c", "c"])

    def stat(idx):
        drawn = cases[idx]
        # every drawn patient appears with all of its images: counts are multiples of its size
        sizes = {"a": 1, "b": 2, "c": 3}
        return {"whole": float(all((drawn == c).sum() % sizes[c] == 0 for c in sizes))}

    boot = cluster_bootstrap(list(cases), stat, n_resamples=300, seed=0)
    assert boot.replicates["whole"].min() == 1.0
    with pytest.raises(ValueError, match="n_resamples"):
        cluster_bootstrap(list(cases), stat, n_resamples=0)
