"""Classification metrics against hand-computed examples and scipy closed forms."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from monai_sam.metrics import (
    accuracy,
    balanced_accuracy,
    classification_metrics,
    confusion_matrix,
    cross_entropy,
    macro_f1,
    macro_roc_auc,
    malignant_sensitivity_specificity,
    per_class_sensitivity_specificity,
    roc_auc_binary,
)

# 3 classes; hand-checked confusion matrix (rows true, columns predicted):
#   [[2, 1, 0],
#    [0, 2, 1],
#    [1, 0, 1]]
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 2, 0, 2])
NAMES = ["benign", "malignant", "normal"]


def test_confusion_matrix_and_accuracy_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 2, 1], [1, 0, 1]])
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 8)


def test_balanced_accuracy_and_sens_spec_by_hand():
    sens, spec = per_class_sensitivity_specificity(Y_TRUE, Y_PRED, 3)
    np.testing.assert_allclose(sens, [2 / 3, 2 / 3, 1 / 2])
    # class 0: negatives = 5, predicted 0 among them = 1 -> tn 4; class 1: negatives 5, fp 1;
    # class 2: negatives 6, fp 1.
    np.testing.assert_allclose(spec, [4 / 5, 4 / 5, 5 / 6])
    assert balanced_accuracy(Y_TRUE, Y_PRED, 3) == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)


def test_balanced_accuracy_ignores_class_absent_from_truth():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])
    assert balanced_accuracy(y_true, y_pred, 3) == pytest.approx((0.5 + 1.0) / 2)


def test_macro_f1_by_hand():
    # per-class F1 = 2tp / (2tp + fp + fn): class0 4/6, class1 4/6, class2 2/4
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx((4 / 6 + 4 / 6 + 2 / 4) / 3)


def test_roc_auc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60).astype(bool)
    scores = np.round(rng.normal(size=60) + y, 1)  # rounding creates ties
    u_stat = mannwhitneyu(scores[y], scores[~y]).statistic
    assert roc_auc_binary(y, scores) == pytest.approx(u_stat / (y.sum() * (~y).sum()))


def test_roc_auc_hand_examples():
    assert roc_auc_binary([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc_binary([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc_binary([0, 1, 1], [0.9, 0.1, 0.2]) == pytest.approx(0.0)
    assert math.isnan(roc_auc_binary([1, 1], [0.2, 0.3]))


def test_macro_auc_warns_and_skips_absent_class():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.7, 0.2]])
    with pytest.warns(RuntimeWarning, match="normal"):
        macro, per_class = macro_roc_auc(y, probs, NAMES)
    assert math.isnan(per_class[2])
    assert per_class[0] == pytest.approx(1.0) and per_class[1] == pytest.approx(1.0)
    assert macro == pytest.approx(1.0)


def test_cross_entropy_closed_form():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    y = np.array([0, 1, 1])
    assert cross_entropy(y, probs) == pytest.approx(-(math.log(0.5) + math.log(0.1) + math.log(1.0)) / 3)
    assert cross_entropy([1], [[1.0, 0.0]]) == pytest.approx(-math.log(1e-12))


def test_malignant_vs_rest():
    sens, spec = malignant_sensitivity_specificity(Y_TRUE, Y_PRED, NAMES)
    assert sens == pytest.approx(2 / 3)
    assert spec == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="malignant"):
        malignant_sensitivity_specificity(Y_TRUE, Y_PRED, ["a", "b", "c"])


def test_classification_metrics_dict():
    probs = np.eye(3)[Y_PRED] * 0.7 + 0.1  # argmax is Y_PRED, rows sum to 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = classification_metrics(Y_TRUE, probs, NAMES)
    assert out["accuracy"] == pytest.approx(5 / 8)
    assert out["malignant_sensitivity"] == pytest.approx(2 / 3)
    assert out["malignant_specificity"] == pytest.approx(4 / 5)
    assert out["sensitivity_normal"] == pytest.approx(0.5)
    assert out["n"] == 8
    expected_auc = np.mean([roc_auc_binary(Y_TRUE == c, probs[:, c]) for c in range(3)])
    assert out["macro_auc"] == pytest.approx(expected_auc)
    binary = classification_metrics([0, 1], [[0.7, 0.3], [0.2, 0.8]], ["benign", "other"])
    assert math.isnan(binary["malignant_sensitivity"])


@pytest.mark.parametrize(
    ("y_true", "probs", "names", "match"),
    [
        ([0, 1], [[0.5, 0.5]], NAMES[:2], "shape"),
        ([0, 3], [[0.5, 0.5], [0.5, 0.5]], NAMES[:2], "outside"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], NAMES, "columns"),
        ([0.5, 1], [[0.5, 0.5], [0.5, 0.5]], NAMES[:2], "integer"),
    ],
)
def test_bad_input_raises(y_true, probs, names, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y_true, probs, names)
