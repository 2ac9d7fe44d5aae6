"""Cluster (patient-level) bootstrap of image-level statistics.

Images of one patient are not independent: two views of the same lesion get similar scores. Resampling
images as if they were independent makes intervals too narrow. :func:`cluster_bootstrap` resamples
*clusters* (patients) with replacement, each drawn patient bringing all of its images, and recomputes
the statistics on every resample; the interval is the percentile interval of the resampled values.
With one image per cluster it is the ordinary image bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ClusterBootstrap", "cluster_bootstrap"]


@dataclass(frozen=True)
class ClusterBootstrap:
    """Outcome of :func:`cluster_bootstrap`.

    Attributes:
        estimates: each statistic on the original images.
        replicates: each statistic on every resample, ``(n_resamples,)`` (``nan`` where undefined).
        intervals: each statistic's percentile interval ``(low, high)`` over its defined replicates
            (``nan`` when none is defined).
        valid: how many replicates of each statistic are defined (an AUC is not when a resample holds
            one class only).
        n_clusters: number of clusters resampled.
        n_resamples, confidence, seed: the settings.
    """

    estimates: dict[str, float]
    replicates: dict[str, np.ndarray]
    intervals: dict[str, tuple[float, float]]
    valid: dict[str, int]
    n_clusters: int
    n_resamples: int
    confidence: float
    seed: int


class _Clusters:
    """The images of each cluster, laid out for fast resampling: ``order`` groups images by cluster."""

    def __init__(self, clusters: Sequence) -> None:
        ids = np.asarray([str(c) for c in clusters])
        _, codes = np.unique(ids, return_inverse=True)
        self.order = np.argsort(codes, kind="stable")
        self.sizes = np.bincount(codes)
        self.starts = np.cumsum(self.sizes) - self.sizes

    def images(self, drawn: np.ndarray) -> np.ndarray:
        """Image indices of the drawn clusters, each with all of its images (repeats included)."""
        sizes = self.sizes[drawn]
        offsets = np.cumsum(sizes) - sizes  # where each drawn cluster starts in the output
        return self.order[np.repeat(self.starts[drawn] - offsets, sizes) + np.arange(sizes.sum())]


def cluster_bootstrap(
    clusters: Sequence,
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ClusterBootstrap:
    """Percentile intervals of image-level statistics by resampling clusters with replacement.

    Every resample draws ``K`` clusters (``K`` = the number of clusters) uniformly with replacement from
    ``numpy.random.default_rng(seed)``, takes all images of each drawn cluster, and evaluates
    ``statistic`` on those image indices. Deterministic for a given ``seed``.

    Args:
        clusters: the cluster (patient) id of every image, shape ``(n,)``.
        statistic: maps image indices (into the caller's arrays, with repeats) to named values; ``nan``
            marks a value undefined on that resample (left out of its interval).
        n_resamples: number of resamples.
        confidence: two-sided level of the percentile intervals.
        seed: random seed.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    layout = _Clusters(clusters)
    if layout.sizes.size == 0:
        raise ValueError("the cluster bootstrap needs at least one image")
    estimates = {k: float(v) for k, v in statistic(np.arange(len(clusters))).items()}
    rng = np.random.default_rng(seed)
    replicates = {k: np.full(n_resamples, np.nan) for k in estimates}
    for r in range(n_resamples):
        values = statistic(layout.images(rng.integers(0, layout.sizes.size, layout.sizes.size)))
        for key in estimates:
            replicates[key][r] = values[key]
    tail = (1.0 - confidence) / 2.0
    intervals, valid = {}, {}
    for key, values in replicates.items():
        defined = values[~np.isnan(values)]
        valid[key] = int(defined.size)
        low, high = np.quantile(defined, [tail, 1.0 - tail]) if defined.size else (np.nan, np.nan)
        intervals[key] = (float(low), float(high))
    return ClusterBootstrap(
        estimates, replicates, intervals, valid, int(layout.sizes.size), n_resamples, confidence, seed
    )
