"""Center loss against Wen et al. 2016: eq. (2) value (batch mean), eq. (3) gradient, eq. (4) centre update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.losses import CenterLoss, apply_loss
from tests.losses.helpers import value_and_grad

CLASSES, DIM = 4, 3
LABELS = np.array([0, 2, 0, 1, 2, 0])  # class 3 absent: its centre must not move


def setup(seed=0, alpha=0.5):
    rng = np.random.default_rng(seed)
    loss = CenterLoss(CLASSES, DIM, alpha=alpha)
    centers = rng.normal(size=(CLASSES, DIM)).astype("float32")
    loss.centers.assign(centers)
    return loss, centers, rng.normal(size=(len(LABELS), DIM)).astype("float32")


def np_center_loss(labels, x, centers):
    return 0.5 * ((x - centers[labels]) ** 2).sum(axis=1).mean()


def np_eq4_update(labels, x, centers, alpha):
    new = centers.astype("float64").copy()
    for j in range(len(centers)):
        members = labels == j
        delta = (centers[j] - x[members]).sum(axis=0) / (1 + members.sum())
        new[j] = centers[j] - alpha * delta
    return new


def test_value_and_gradient_flow_to_features_not_centres():
    loss, centers, x = setup()
    value, grad = value_and_grad(lambda e: loss(LABELS, e), x)
    assert value == pytest.approx(np_center_loss(LABELS, x, centers), rel=1e-5)
    np.testing.assert_allclose(grad, (x - centers[LABELS]) / len(LABELS), atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(loss.centers.value)
        out = loss(LABELS, x)
    assert tape.gradient(out, loss.centers.value) is None
    assert loss.centers.trainable is False


def test_training_call_updates_centres_by_eq4_after_computing_the_loss():
    loss, centers, x = setup(seed=1, alpha=0.3)
    value = float(loss.compute(LABELS, x, training=True))
    assert value == pytest.approx(np_center_loss(LABELS, x, centers), rel=1e-5)  # pre-update centres
    updated = keras.ops.convert_to_numpy(loss.centers)
    np.testing.assert_allclose(updated, np_eq4_update(LABELS, x, centers, 0.3), atol=1e-6)
    np.testing.assert_array_equal(updated[3], centers[3])
    assert not np.allclose(updated[0], centers[0])


def test_no_update_without_training():
    loss, centers, x = setup(seed=2)
    loss.compute(LABELS, x, training=False)
    loss(LABELS, x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loss.centers), centers)


def test_unlabelled_rows_give_no_loss_and_move_no_centre():
    loss, centers, x = setup(seed=3)
    labels = np.array([0, np.nan, 0, 1, -1, 0], "float32")
    known = ~np.isnan(labels) & (labels >= 0)
    value, grad = value_and_grad(lambda e: loss(labels, e), x)
    assert value == pytest.approx(np_center_loss(labels[known].astype(int), x[known], centers), rel=1e-5)
    assert np.all(grad[~known] == 0.0)
    loss.compute(labels, x, training=True)
    expected = np_eq4_update(labels[known].astype(int), x[known], centers, 0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.centers), expected, atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loss.centers)[2], centers[2])


def test_centres_exist_before_any_call_and_config_roundtrips():
    loss = CenterLoss(num_classes=5, dim=7, alpha=0.25, name="c")
    assert [tuple(v.shape) for v in loss.variables] == [(5, 7)]
    assert np.all(keras.ops.convert_to_numpy(loss.centers) == 0.0)
    clone = CenterLoss.from_config(loss.get_config())
    assert (clone.num_classes, clone.dim, clone.alpha, clone.name) == (5, 7, 0.25, "c")
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(3, 2, alpha=1.5)


def test_centres_mirror_and_update_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        loss = CenterLoss(CLASSES, DIM, alpha=0.5)
    assert isinstance(loss.centers.value, tf.distribute.DistributedValues)
    x = np.random.default_rng(4).normal(size=(len(LABELS), DIM)).astype("float32")

    @tf.function
    def step():
        return strategy.run(lambda: loss.compute(LABELS, x, training=True))

    step()
    expected = np_eq4_update(LABELS, x, np.zeros((CLASSES, DIM)), 0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.centers), expected, atol=1e-6)


class _CenterModel(keras.Model):
    """What the engine does: track the loss state on the model, call the loss in compute_loss."""

    def __init__(self, loss):
        super().__init__(name="center_model")
        self.dense = keras.layers.Dense(DIM)
        self.center_loss = loss
        self.loss_state = loss.variables  # tracked: checkpointed and carried through train steps

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return apply_loss(self.center_loss, y, y_pred, training=training)


def test_fit_step_through_compute_loss_updates_tracked_centres():
    loss = CenterLoss(CLASSES, DIM, alpha=0.5)
    model = _CenterModel(loss)
    x = np.random.default_rng(5).normal(size=(len(LABELS), 2)).astype("float32")
    model(x)
    assert any(v is loss.centers for v in model.non_trainable_variables)
    features = keras.ops.convert_to_numpy(model(x))  # the step's forward pass, before the SGD update
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(x, LABELS.astype("float32"), batch_size=len(x), epochs=1, verbose=0)
    expected = np_eq4_update(LABELS, features, np.zeros((CLASSES, DIM)), 0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.centers), expected, atol=1e-5)
