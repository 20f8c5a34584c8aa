import keras
import numpy as np
import pytest

from keras_fgvc.losses import MaskedBinaryCrossentropy, MaskedSparseCategoricalCrossentropy
from tests.losses.helpers import np_log_softmax, np_softmax, value_and_grad


def sparse_batch(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(6, 4)).astype("float32")
    labels = np.array([2.0, np.nan, 0.0, 3.0, np.nan, 1.0], "float32")
    return labels, logits


def np_masked_sparse_ce(labels, logits):
    known = ~np.isnan(labels)
    ce = -np_log_softmax(logits[known])[np.arange(known.sum()), labels[known].astype(int)]
    return ce.mean() if known.any() else 0.0


def test_masked_sparse_ce_is_mean_over_labelled_rows():
    labels, logits = sparse_batch()
    got = float(MaskedSparseCategoricalCrossentropy()(labels, logits))
    assert got == pytest.approx(np_masked_sparse_ce(labels, logits), rel=1e-5)
    # Not the mean over all six rows with zeros for the missing ones.
    assert got != pytest.approx(np_masked_sparse_ce(labels, logits) * 4 / 6, rel=1e-3)


def test_masked_sparse_ce_gradient_is_zero_on_missing_rows():
    labels, logits = sparse_batch(seed=1)
    _, grad = value_and_grad(lambda x: MaskedSparseCategoricalCrossentropy()(labels, x), logits)
    known = ~np.isnan(labels)
    expected = np.zeros_like(grad)
    onehot = np.eye(4)[labels[known].astype(int)]
    expected[known] = (np_softmax(logits[known]) - onehot) / known.sum()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    assert np.all(grad[~known] == 0.0)


def test_masked_sparse_ce_negative_label_and_column_shape_are_missing_too():
    labels, logits = sparse_batch(seed=2)
    as_minus_one = np.where(np.isnan(labels), -1.0, labels)[:, None]
    got = float(MaskedSparseCategoricalCrossentropy()(as_minus_one, logits))
    assert got == pytest.approx(np_masked_sparse_ce(labels, logits), rel=1e-5)


def test_masked_sparse_ce_from_probabilities():
    labels, logits = sparse_batch(seed=3)
    got = float(MaskedSparseCategoricalCrossentropy(from_logits=False)(labels, np_softmax(logits)))
    assert got == pytest.approx(np_masked_sparse_ce(labels, logits), rel=1e-4)


def bce_batch(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(4, 3)).astype("float32")
    targets = rng.integers(0, 2, size=(4, 3)).astype("float32")
    targets[0, 1] = targets[2, 0] = targets[2, 2] = targets[3, 1] = np.nan
    return targets, logits


def np_masked_bce(targets, logits):
    logits = logits.astype("float64")
    known = ~np.isnan(targets)
    y, x = targets[known], logits[known]
    # Stable log(1 + exp(-|x|)) form of the sigmoid cross-entropy.
    per_entry = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return per_entry.mean() if known.any() else 0.0


def test_masked_bce_value_and_gradient():
    targets, logits = bce_batch()
    value, grad = value_and_grad(lambda x: MaskedBinaryCrossentropy()(targets, x), logits)
    assert value == pytest.approx(np_masked_bce(targets, logits), rel=1e-5)
    known = ~np.isnan(targets)
    sigmoid = 1.0 / (1.0 + np.exp(-logits.astype("float64")))
    expected = np.where(known, (sigmoid - np.nan_to_num(targets)) / known.sum(), 0.0)
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    assert np.all(grad[~known] == 0.0)


@pytest.mark.parametrize(
    "cls,make", [(MaskedSparseCategoricalCrossentropy, sparse_batch), (MaskedBinaryCrossentropy, bce_batch)]
)
def test_nothing_labelled_gives_zero_loss_and_zero_gradient(cls, make):
    labels, logits = make(seed=4)
    labels = np.full_like(labels, np.nan)
    value, grad = value_and_grad(lambda x: cls()(labels, x), logits)
    assert value == 0.0
    assert np.all(grad == 0.0)


def test_reduction_none_and_sum():
    targets, logits = bce_batch(seed=5)
    known = ~np.isnan(targets)
    values = keras.ops.convert_to_numpy(MaskedBinaryCrossentropy(reduction="none")(targets, logits))
    assert values.shape == targets.shape
    assert np.all(values[~known] == 0.0) and np.all(values[known] > 0.0)
    total = float(MaskedBinaryCrossentropy(reduction="sum")(targets, logits))
    assert total == pytest.approx(np_masked_bce(targets, logits) * known.sum(), rel=1e-5)


def test_config_roundtrip():
    for cls in (MaskedSparseCategoricalCrossentropy, MaskedBinaryCrossentropy):
        clone = cls.from_config(cls(from_logits=False, name="m").get_config())
        assert (clone.from_logits, clone.name, type(clone)) == (False, "m", cls)
