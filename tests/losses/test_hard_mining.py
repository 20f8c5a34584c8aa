"""Hard-instance mining = mean of the top-k per-sample losses of the base loss."""

import math

import keras
import numpy as np
import pytest

from keras_fgvc.losses import (
    HardInstanceMining,
    LabelSmoothingCrossEntropy,
    MaskedSparseCategoricalCrossentropy,
    build_loss,
)
from tests.losses.helpers import np_log_softmax, np_softmax, value_and_grad

EPS = 0.1


def batch(seed=0, size=7, classes=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, classes, size=size), rng.normal(scale=2.0, size=(size, classes)).astype("float32")


def np_per_sample_lsce(labels, logits, eps=EPS):
    ce = -np_log_softmax(logits)
    return (1 - eps) * ce[np.arange(len(labels)), labels] + eps * ce.mean(axis=1)


@pytest.mark.parametrize(
    "kwargs,k", [({"fraction": 0.5}, 4), ({"fraction": 0.25}, 2), ({"top_k": 3}, 3), ({"top_k": 50}, 7)]
)
def test_value_is_mean_of_top_k_numpy_losses_and_only_those_get_gradient(kwargs, k):
    labels, logits = batch()
    loss = build_loss("hard_mining", {"loss": "label_smoothing_ce", "loss_kwargs": {"epsilon": EPS}, **kwargs})
    value, grad = value_and_grad(lambda x: loss(labels, x), logits)
    per_sample = np_per_sample_lsce(labels, logits)
    hardest = np.argsort(-per_sample)[:k]
    assert value == pytest.approx(np.sort(per_sample)[::-1][:k].mean(), rel=1e-5)
    target = (1 - EPS) * np.eye(4)[labels] + EPS / 4
    expected = np.zeros_like(grad)
    expected[hardest] = (np_softmax(logits[hardest]) - target[hardest]) / k
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_masked_entries_are_never_selected_and_k_counts_labelled_only():
    labels, logits = batch(seed=1, size=6)
    labels = labels.astype("float32")
    labels[[0, 3]] = np.nan
    loss = HardInstanceMining(MaskedSparseCategoricalCrossentropy(reduction="none"), fraction=0.5)
    value, grad = value_and_grad(lambda x: loss(labels, x), logits)
    known = ~np.isnan(labels)
    per_sample = -np_log_softmax(logits[known])[np.arange(known.sum()), labels[known].astype(int)]
    k = math.ceil(0.5 * known.sum())
    assert value == pytest.approx(np.sort(per_sample)[::-1][:k].mean(), rel=1e-5)
    assert np.all(grad[~known] == 0.0) and np.all(np.isfinite(grad))


def test_ties_still_select_exactly_k():
    labels = np.zeros(6, int)
    logits = np.zeros((6, 3), "float32")  # every sample has loss log(3)
    loss = HardInstanceMining(LabelSmoothingCrossEntropy(0.0, reduction="none"), top_k=2, reduction="none")
    per_entry = keras.ops.convert_to_numpy(loss(labels, logits))
    assert np.count_nonzero(per_entry) == 2
    mean = HardInstanceMining(LabelSmoothingCrossEntropy(0.0), top_k=2)(labels, logits)
    assert float(mean) == pytest.approx(math.log(3))


def test_base_built_with_reduction_none_and_serialization_roundtrip():
    loss = build_loss("hard_mining", {"loss": "label_smoothing_ce", "loss_kwargs": {"epsilon": 0.2}, "top_k": 3})
    assert (loss.loss.reduction, loss.loss.epsilon, loss.top_k, loss.fraction) == ("none", 0.2, 3, None)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(clone, HardInstanceMining) and isinstance(clone.loss, LabelSmoothingCrossEntropy)
    assert (clone.loss.epsilon, clone.top_k) == (0.2, 3)
    labels, logits = batch(seed=2)
    assert float(clone(labels, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)


def test_invalid_arguments_raise():
    base = LabelSmoothingCrossEntropy(reduction="none")
    with pytest.raises(ValueError, match="not both"):
        HardInstanceMining(base, fraction=0.5, top_k=2)
    with pytest.raises(ValueError, match="fraction"):
        HardInstanceMining(base, fraction=0.0)
    with pytest.raises(ValueError, match="stateless"):
        HardInstanceMining(build_loss("distillation"))
