import keras
import numpy as np
import pytest

from keras_fgvc.losses import LabelSmoothingCrossEntropy, build_loss
from tests.losses.helpers import np_log_softmax, np_softmax, value_and_grad

EPS = 0.1


def random_batch(batch=6, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, classes, size=batch), rng.normal(scale=2.0, size=(batch, classes)).astype("float32")


def np_thesis_lsce(labels, logits, eps):
    """Seed 001, Figure 13: (1 - eps) * ce(i) + eps * sum_j ce(j) / N, averaged over the batch."""
    ce = -np_log_softmax(logits)  # ce(j) for every class j
    per_sample = (1 - eps) * ce[np.arange(len(labels)), labels] + eps * ce.sum(axis=1) / logits.shape[1]
    return per_sample.mean()


def test_equals_thesis_formula_and_keras_categorical_label_smoothing():
    labels, logits = random_batch()
    got = float(LabelSmoothingCrossEntropy(epsilon=EPS)(labels, logits))
    assert got == pytest.approx(np_thesis_lsce(labels, logits, EPS), rel=1e-5)
    onehot = np.eye(logits.shape[1], dtype="float32")[labels]
    keras_cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=EPS)
    assert got == pytest.approx(float(keras_cce(onehot, logits)), rel=1e-5)
    # Smoothing changes the value: the test would notice a dropped epsilon term.
    assert got != pytest.approx(np_thesis_lsce(labels, logits, 0.0), rel=1e-3)


def test_gradient_is_softmax_minus_smoothed_target():
    labels, logits = random_batch(seed=1)
    _, grad = value_and_grad(lambda x: LabelSmoothingCrossEntropy(epsilon=EPS)(labels, x), logits)
    classes = logits.shape[1]
    target = (1 - EPS) * np.eye(classes)[labels] + EPS / classes
    np.testing.assert_allclose(grad, (np_softmax(logits) - target) / len(labels), atol=1e-6)


def test_zero_epsilon_equals_registered_sparse_ce_and_column_labels_work():
    labels, logits = random_batch(seed=2)
    plain = build_loss("sparse_ce")
    expected = -np_log_softmax(logits)[np.arange(len(labels)), labels].mean()
    assert float(plain(labels, logits)) == pytest.approx(expected, rel=1e-5)
    got = float(LabelSmoothingCrossEntropy(epsilon=0.0)(labels[:, None], logits))
    assert got == pytest.approx(expected, rel=1e-5)


def test_reduction_none_gives_per_sample_values():
    labels, logits = random_batch(seed=3)
    values = keras.ops.convert_to_numpy(LabelSmoothingCrossEntropy(EPS, reduction="none")(labels, logits))
    assert values.shape == (len(labels),)
    assert values.mean() == pytest.approx(np_thesis_lsce(labels, logits, EPS), rel=1e-5)


def test_config_roundtrip_and_range_check():
    loss = LabelSmoothingCrossEntropy(epsilon=0.2, name="ls")
    clone = LabelSmoothingCrossEntropy.from_config(loss.get_config())
    assert (clone.epsilon, clone.name) == (0.2, "ls")
    with pytest.raises(ValueError, match="epsilon"):
        LabelSmoothingCrossEntropy(epsilon=1.5)


def test_mixed_rows_from_cutmix_are_cross_entropy_against_the_smoothed_rows():
    # CutMix hands over q = lam * onehot(a) + (1 - lam) * onehot(b); the loss is CE against
    # (1 - eps) * q + eps / N, written out in NumPy.
    labels, logits = random_batch()
    partners = np.roll(labels, 1)
    lam = np.linspace(0.2, 0.9, len(labels))[:, None]
    eye = np.eye(logits.shape[1], dtype="float32")
    mixed = (lam * eye[labels] + (1 - lam) * eye[partners]).astype("float32")
    target = (1 - EPS) * mixed + EPS / logits.shape[1]
    expected = -(target * np_log_softmax(logits)).sum(axis=1).mean()
    loss = LabelSmoothingCrossEntropy(epsilon=EPS)
    assert float(loss(mixed, logits)) == pytest.approx(expected, rel=1e-5)
    # a one-hot row is the integer label
    assert float(loss(eye[labels], logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)
