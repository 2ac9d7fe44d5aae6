"""Statistics for comparing optimizers over folds and seeds.

* :func:`t_interval`: mean and two-sided Student-t confidence interval of independent runs.
* :func:`wilcoxon_paired`: two-sided Wilcoxon signed-rank test of paired differences (exact null
  distribution when there are no ties or zero differences, the normal approximation otherwise, as
  scipy decides), plus the smallest p-value the exact test can reach with that many pairs, so a
  report can say when a comparison could never have been significant.
* :func:`bootstrap_mean_ci`: percentile bootstrap CI of a mean, deterministic for a given seed; it
  never leaves the range of the values, so a bounded metric's interval stays within its bounds.
* :func:`paired_bootstrap_ci`: the same for the mean paired difference.
* :func:`holm`: Holm-Bonferroni step-down adjustment across a family of comparisons.
* :func:`corrected_resampled_ttest`: Nadeau and Bengio's corrected resampled t-test for
  cross-validation differences whose training sets overlap.
* :func:`delong_paired`: DeLong's test of the difference of two correlated ROC AUCs on the same
  images (binary, or the macro one-vs-rest AUC of several classes), with Sun and Xu's mid-rank
  algorithm; it lives in :mod:`monai_sam.metrics.delong` (with the interval of one AUC) and is
  re-exported here.
* :func:`minimal_detectable_difference`: the smallest mean difference the corrected t-test detects
  with a given power, from the observed spread of the differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from monai_sam.metrics.delong import DeLongResult, delong_paired

__all__ = [
    "DeLongResult",
    "TTestResult",
    "WilcoxonResult",
    "bootstrap_mean_ci",
    "corrected_resampled_ttest",
    "delong_paired",
    "holm",
    "min_wilcoxon_p",
    "minimal_detectable_difference",
    "paired_bootstrap_ci",
    "t_interval",
    "wilcoxon_paired",
]

#: Fewest values a bootstrap interval is computed from: resampling one or two numbers says nothing.
MIN_BOOTSTRAP_SIZE = 3


_NAN = float("nan")


def _mean_without_interval(values: np.ndarray, min_size: int) -> tuple[float, float, float] | None:
    """``(mean, nan, nan)`` (or all nan when empty) if ``values`` is too small for an interval, else None."""
    if values.size >= min_size:
        return None
    return (float(values.mean()) if values.size else _NAN), _NAN, _NAN


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, low, high)`` of ``values``.

    NaNs are dropped. With fewer than two values the interval is ``(nan, nan)``: a single run says
    nothing about run-to-run spread.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    small = _mean_without_interval(arr, 2)
    if small is not None:
        return small
    mean = float(arr.mean())
    sem = float(arr.std(ddof=1)) / math.sqrt(arr.size)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=arr.size - 1)) * sem
    return mean, mean - half, mean + half


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided p-value the exact signed-rank test can return with ``n`` non-zero pairs.

    It is ``2 / 2**n`` (all differences of one sign); with ``n <= 5`` it is at least 0.0625, so such
    a comparison can never be significant at 0.05.
    """
    return min(1.0, 2.0 / 2.0**n) if n > 0 else 1.0


@dataclass(frozen=True)
class WilcoxonResult:
    """Outcome of :func:`wilcoxon_paired`.

    Attributes:
        n: number of pairs (including zero differences).
        n_nonzero: pairs with a non-zero difference (the ones the test ranks).
        statistic: scipy's signed-rank statistic (``nan`` when the test cannot run).
        p_value: two-sided p-value (1.0 when every difference is zero, ``nan`` with no pairs).
        min_p: smallest p-value reachable with ``n_nonzero`` pairs (see :func:`min_wilcoxon_p`).
        method: ``"exact"``, ``"approx"`` or ``"none"``.
    """

    n: int
    n_nonzero: int
    statistic: float
    p_value: float
    min_p: float
    method: str


def wilcoxon_paired(a, b) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of ``a - b`` (pairs with a NaN are dropped).

    Zero differences are discarded (Wilcoxon's convention). The exact distribution is used when
    the remaining differences have no ties, otherwise the normal approximation.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[~np.isnan(diff)]
    nonzero = diff[diff != 0]
    n, m = int(diff.size), int(nonzero.size)
    if n == 0:
        return WilcoxonResult(0, 0, float("nan"), float("nan"), 1.0, "none")
    if m == 0:
        return WilcoxonResult(n, 0, float("nan"), 1.0, 1.0, "none")
    # metric differences like 0.91 - 0.87 and 0.88 - 0.84 are ties up to rounding
    abs_vals = np.round(np.abs(nonzero), 12)
    method = "exact" if np.unique(abs_vals).size == m else "approx"
    res = stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided", method=method)
    return WilcoxonResult(n, m, float(res.statistic), float(res.pvalue), min_wilcoxon_p(m), method)


def paired_bootstrap_ci(
    a, b, confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` and its percentile bootstrap CI ``(mean, low, high)``, resampling pairs.

    Deterministic for a given ``seed``. With fewer than three pairs the interval is ``(nan, nan)``:
    resampling one or two numbers says nothing. With few pairs the percentile interval is still too
    narrow (it cannot exceed the range of the differences); read it alongside the Wilcoxon test.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return bootstrap_mean_ci(diff, confidence, n_resamples, seed)


def bootstrap_mean_ci(
    values, confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap CI ``(mean, low, high)`` (NaNs dropped).

    Deterministic for a given ``seed``. The interval lies within ``[min(values), max(values)]``, so
    for a metric bounded to ``[0, 1]`` (accuracy, sensitivity, AUC) it stays in ``[0, 1]``, unlike a
    Student-t interval. With fewer than :data:`MIN_BOOTSTRAP_SIZE` values it is ``(nan, nan)``; with
    few values it is narrower than the true uncertainty (it cannot exceed the observed range).
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    small = _mean_without_interval(arr, MIN_BOOTSTRAP_SIZE)
    if small is not None:
        return small
    mean = float(arr.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))
    means = arr[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return mean, float(low), float(high)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaNs stay NaN and do not count towards the family size).

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), a running maximum keeps the
    adjusted values monotone, and the result is capped at 1. Rejecting where the adjusted value is
    below alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass(frozen=True)
class TTestResult:
    """Outcome of :func:`corrected_resampled_ttest`.

    Attributes:
        n: number of differences (train/test splits).
        mean: mean difference.
        std: sample standard deviation of the differences (``ddof=1``).
        se: the corrected standard error ``std * sqrt(1/n + test_train_ratio)``.
        statistic: ``mean / se`` (``nan`` when it cannot be computed).
        df: degrees of freedom, ``n - 1``.
        p_value: two-sided p-value from Student's t with ``df`` degrees of freedom.
    """

    n: int
    mean: float
    std: float
    se: float
    statistic: float
    df: int
    p_value: float


def _corrected_se(std: float, n: int, test_train_ratio: float) -> float:
    """Nadeau-Bengio standard error of a mean of ``n`` resampled differences."""
    return std * math.sqrt(1.0 / n + test_train_ratio)


def corrected_resampled_ttest(differences, test_train_ratio: float) -> TTestResult:
    """Nadeau and Bengio's corrected resampled t-test of the mean of ``differences``.

    ``t = mean(d) / sqrt((1/J + n_test/n_train) * var(d))`` with ``J - 1`` degrees of freedom
    (Nadeau and Bengio, "Inference for the generalization error", Machine Learning 52, 2003;
    Bouckaert and Frank, PAKDD 2004, for repeated k-fold). The ``n_test/n_train`` term accounts
    for the correlation of differences measured on overlapping training sets, which makes the
    plain paired t-test (and the Wilcoxon test) far too liberal for cross-validation.

    Args:
        differences: one paired difference per train/test split (NaNs dropped).
        test_train_ratio: ``n_test / n_train`` of one split (``1 / (k - 1)`` for k-fold).

    Returns:
        A :class:`TTestResult`; with fewer than two differences, or no spread, the statistic and
        p-value are ``nan`` (p is 1.0 when every difference is exactly zero).
    """
    if not test_train_ratio >= 0:
        raise ValueError(f"test_train_ratio must be >= 0, got {test_train_ratio}")
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    n = int(d.size)
    if n < 2:
        mean = float(d.mean()) if n else _NAN
        return TTestResult(n, mean, _NAN, _NAN, _NAN, max(n - 1, 0), _NAN)
    mean, std = float(d.mean()), float(d.std(ddof=1))
    se = _corrected_se(std, n, test_train_ratio)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        return TTestResult(n, mean, std, se, _NAN, n - 1, p)
    t = mean / se
    return TTestResult(n, mean, std, se, t, n - 1, float(2.0 * stats.t.sf(abs(t), df=n - 1)))


def minimal_detectable_difference(
    std: float, n: int, test_train_ratio: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest true mean difference the two-sided corrected t-test detects with ``power``.

    The usual normal-theory approximation with t quantiles,
    ``(t(1 - alpha/2, n-1) + t(power, n-1)) * std * sqrt(1/n + test_train_ratio)``, with ``std``
    the observed spread of the differences. Pass the per-test level (``alpha / m`` for a
    Bonferroni or worst-case Holm family of ``m``). ``nan`` when ``n < 2`` or ``std`` is nan.

    Args:
        std: sample standard deviation of the paired differences.
        n: number of differences.
        test_train_ratio: ``n_test / n_train`` (see :func:`corrected_resampled_ttest`).
        alpha: two-sided significance level of the test.
        power: wanted probability of rejecting at that difference.
    """
    if n < 2 or not math.isfinite(std):
        return _NAN
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    quantiles = stats.t.ppf(1.0 - alpha / 2.0, df=n - 1) + stats.t.ppf(power, df=n - 1)
    return float(quantiles * _corrected_se(std, n, test_train_ratio))
