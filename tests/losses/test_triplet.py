"""Triplet losses against loop-based NumPy references of Hermans et al. 2017 (eq. 5, eq. 6 / "BA != 0")."""

import keras
import numpy as np
import pytest

from keras_fgvc.losses import BatchAllTripletLoss, BatchHardTripletLoss
from keras_fgvc.losses.triplet import pairwise_distances
from tests.losses.helpers import numeric_grad, value_and_grad

LABELS = np.array([0, 1, 0, 2, 1, 2, 0, 1])


def embeddings(batch=8, dim=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, dim)).astype("float32")


def np_distances(x, squared):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return d2 if squared else np.sqrt(d2)


def np_hinge(diff, margin, soft):
    return np.log1p(np.exp(diff)) if soft else np.maximum(margin + diff, 0.0)


def np_batch_hard(labels, x, margin=0.3, squared=False, soft=False):
    d = np_distances(np.asarray(x, "float64"), squared)
    losses = []
    for a in range(len(labels)):
        pos = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            losses.append(np_hinge(max(pos) - min(neg), margin, soft))
    return float(np.mean(losses)) if losses else 0.0


def np_batch_all(labels, x, margin=0.3, squared=False, soft=False):
    d = np_distances(np.asarray(x, "float64"), squared)
    terms = []
    n = len(labels)
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if p != a and labels[p] == labels[a] and labels[q] != labels[a]:
                    terms.append(np_hinge(d[a, p] - d[a, q], margin, soft))
    counted = [t for t in terms if soft or t > 0]
    return float(np.mean(counted)) if counted else 0.0


CASES = [
    (BatchHardTripletLoss, np_batch_hard, {"margin": 0.3}),
    (BatchHardTripletLoss, np_batch_hard, {"margin": 0.5, "squared": True}),
    (BatchHardTripletLoss, np_batch_hard, {"soft_margin": True}),
    (BatchAllTripletLoss, np_batch_all, {"margin": 0.3}),
    (BatchAllTripletLoss, np_batch_all, {"margin": 1.0, "squared": True}),
    (BatchAllTripletLoss, np_batch_all, {"soft_margin": True}),
]


@pytest.mark.parametrize("cls,reference,kwargs", CASES)
def test_value_and_gradient_match_numpy_reference(cls, reference, kwargs):
    x = embeddings()
    value, grad = value_and_grad(lambda e: cls(**kwargs)(LABELS, e), x)
    np_kwargs = {"margin": kwargs.get("margin", 0.3), "squared": kwargs.get("squared", False),
                 "soft": kwargs.get("soft_margin", False)}
    expected = reference(LABELS, x, **np_kwargs)
    assert expected > 0.0  # the case exercises a non-trivial loss
    assert value == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose(grad, numeric_grad(lambda e: reference(LABELS, e, **np_kwargs), x), atol=2e-4)
    assert np.abs(grad).max() > 1e-3


def test_batch_all_averages_only_positive_triplets():
    x = embeddings(seed=1)
    got = float(BatchAllTripletLoss(margin=0.3)(LABELS, x))
    d = np_distances(x.astype("float64"), False)
    all_terms = [max(0.3 + d[a, p] - d[a, n], 0) for a in range(8) for p in range(8) for n in range(8)
                 if p != a and LABELS[p] == LABELS[a] and LABELS[n] != LABELS[a]]
    assert 0 in all_terms  # some triplets are already satisfied...
    assert got > np.mean(all_terms)  # ...and they are left out of the mean


def test_anchor_without_positive_is_left_out_of_the_mean():
    labels = np.array([0, 0, 1, 1, 2])  # anchor 4 is the only sample of class 2
    x = embeddings(batch=5, seed=2)
    got = float(BatchHardTripletLoss(margin=0.3)(labels, x))
    d = np_distances(x.astype("float64"), False)
    per_anchor = [max(0.3 + d[a, p] - min(d[a, n] for n in range(5) if labels[n] != labels[a]), 0)
                  for a, p in ((0, 1), (1, 0), (2, 3), (3, 2))]
    assert got == pytest.approx(np.mean(per_anchor), rel=1e-5)
    assert got != pytest.approx(np.sum(per_anchor) / 5, rel=1e-3)
    per_entry = keras.ops.convert_to_numpy(BatchHardTripletLoss(margin=0.3, reduction="none")(labels, x))
    assert per_entry[4] == 0.0


@pytest.mark.parametrize("cls", [BatchHardTripletLoss, BatchAllTripletLoss])
@pytest.mark.parametrize("labels", [np.zeros(4, int), np.arange(4)])
def test_no_valid_anchor_gives_zero_loss_and_finite_zero_gradient(cls, labels):
    value, grad = value_and_grad(lambda e: cls(margin=0.3)(labels, e), embeddings(batch=4, seed=3))
    assert value == 0.0
    assert np.all(grad == 0.0)


@pytest.mark.parametrize("cls", [BatchHardTripletLoss, BatchAllTripletLoss])
def test_identical_embeddings_have_finite_gradients(cls):
    x = embeddings(batch=4, seed=4)
    x[1] = x[0]  # a positive pair at distance exactly 0
    labels = np.array([0, 0, 1, 1])
    value, grad = value_and_grad(lambda e: cls(margin=0.3)(labels, e), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_pairwise_distances_exact_with_zero_diagonal():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]], "float32")
    got = keras.ops.convert_to_numpy(pairwise_distances(x))
    np.testing.assert_allclose(got, [[0, 5, 5], [5, 0, 0], [5, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(pairwise_distances(x, squared=True)), got**2, atol=1e-5)


def test_config_roundtrip():
    for cls in (BatchHardTripletLoss, BatchAllTripletLoss):
        loss = cls(margin=0.7, squared=True, soft_margin=True, name="t")
        clone = cls.from_config(loss.get_config())
        assert (clone.margin, clone.squared, clone.soft_margin, clone.name) == (0.7, True, True, "t")
