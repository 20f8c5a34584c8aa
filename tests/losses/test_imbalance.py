"""Class-weighted cross-entropy and focal loss against NumPy formulas and scikit-learn's weights."""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.class_weight import compute_class_weight

import keras
from keras_fgvc.config.validate import ConfigError
from keras_fgvc.losses import build_loss, check_loss
from keras_fgvc.losses.imbalance import resolve_class_weight
from keras_fgvc.training.stages import class_counts

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(0, 2, (12, 3)).astype("float32")
LABELS = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 1])


def log_softmax(x):
    x = x.astype("float64")
    shifted = x - x.max(1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


def reference(gamma, weights):
    log_p = log_softmax(LOGITS)[np.arange(len(LABELS)), LABELS]
    per_sample = -((1 - np.exp(log_p)) ** gamma) * log_p * weights[LABELS]
    return per_sample.mean()


def test_balanced_weights_are_scikit_learns():
    counts = np.bincount(LABELS, minlength=3)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=LABELS)
    np.testing.assert_allclose(resolve_class_weight("balanced", 3, counts), expected, rtol=1e-6)
    # A class missing from the training rows gets weight 0, not inf; the others n / (k * count).
    np.testing.assert_allclose(resolve_class_weight("balanced", 3, [4, 0, 4]), [8 / 12, 0.0, 8 / 12], rtol=1e-6)


def test_weighted_ce_is_the_weighted_batch_mean():
    context = {"num_classes": 3, "class_counts": np.bincount(LABELS, minlength=3).tolist()}
    loss = build_loss("weighted_ce", {}, context)
    weights = compute_class_weight("balanced", classes=np.arange(3), y=LABELS)
    np.testing.assert_allclose(float(loss(LABELS, LOGITS)), reference(0.0, weights), rtol=1e-5)
    explicit = build_loss("weighted_ce", {"class_weight": [1.0, 1.0, 1.0]}, {"num_classes": 3})
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS)
    np.testing.assert_allclose(float(explicit(LABELS, LOGITS)), float(plain), rtol=1e-5)


@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (1.0, [0.25, 1.0, 3.0])])
def test_focal_matches_the_paper_formula(gamma, alpha):
    loss = build_loss("focal", {"gamma": gamma, "alpha": alpha}, {"num_classes": 3})
    weights = np.ones(3) if alpha is None else np.asarray(alpha)
    np.testing.assert_allclose(float(loss(LABELS, LOGITS)), reference(gamma, weights), rtol=1e-5)
    # Confident correct samples are down-weighted: the focal term is below plain CE.
    assert float(loss(LABELS, LOGITS)) < reference(0.0, weights)


def test_bad_weights_are_config_errors():
    with pytest.raises(ConfigError, match="class_weight must be 'balanced' or a list"):
        check_loss("weighted_ce", {"class_weight": "inverse"})
    with pytest.raises(ConfigError, match="gamma must be >= 0"):
        check_loss("focal", {"gamma": -1})
    with pytest.raises(ConfigError, match="which the engine sets"):
        check_loss("focal", {"class_counts": [1, 2]})
    with pytest.raises(ValueError, match="needs the training rows' class counts"):
        build_loss("weighted_ce", {}, {"num_classes": 3})


def test_engine_counts_integer_label_columns_only():
    rows = pd.DataFrame({"label": [0, 1, 1, 1], "float_label": [0.0, 1.0, 1.0, 0.0], "part": [0.5, 1, 0, 0],
                         "missing": [0, 1, np.nan, 1]})
    assert class_counts(rows, "label", 3) == [1, 3, 0]
    assert class_counts(rows, "float_label", 2) == [2, 2]
    assert class_counts(rows, "part", 2) is None  # soft targets
    assert class_counts(rows, "missing", 2) is None
    assert class_counts(rows, "label", 1) is None  # out of range
    assert class_counts(rows, "absent", 2) is None
