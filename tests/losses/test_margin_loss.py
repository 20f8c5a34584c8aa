import keras
import numpy as np
import pytest

from keras_fgvc.layers import ArcFace, CosFace
from keras_fgvc.losses import ArcFaceLoss, CosFaceLoss
from tests.harness import check_one_batch_fit
from tests.layers.test_margin import np_arcface, np_cosface


def np_softmax_ce(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


def random_cos(n=6, c=5, seed=0):
    rng = np.random.default_rng(seed)
    cos = rng.uniform(-1, 1, size=(n, c)).astype("float32")
    cos[0, 0], cos[1, 1] = -0.99, 0.999  # include theta + m > pi and theta ~ 0 on targets
    return cos, np.array([0, 1, 2, 3, 4, 0])


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_loss_is_ce_of_reference_margin_logits(easy_margin):
    cos, labels = random_cos()
    loss = ArcFaceLoss(s=30.0, m=0.5, easy_margin=easy_margin)(labels, 30.0 * cos)
    expected = np_softmax_ce(np_arcface(cos, labels, 30.0, 0.5, easy_margin), labels)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_cosface_loss_is_ce_of_reference_margin_logits():
    cos, labels = random_cos(seed=3)
    loss = CosFaceLoss(s=16.0, m=0.35)(labels[:, None], 16.0 * cos)  # (batch, 1) labels work too
    assert float(loss) == pytest.approx(np_softmax_ce(np_cosface(cos, labels, 16.0, 0.35), labels), rel=1e-4)


@pytest.mark.parametrize("head_cls,loss_cls", [(ArcFace, ArcFaceLoss), (CosFace, CosFaceLoss)])
def test_loss_on_inference_logits_equals_ce_of_layer_margin_logits(head_cls, loss_cls):
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    labels = np.array([0, 2, 1, 2])
    head = head_cls(3, s=20.0)
    margin_logits = keras.ops.convert_to_numpy(head(x, labels))
    loss = loss_cls(s=20.0)(labels, head(x))
    assert float(loss) == pytest.approx(np_softmax_ce(margin_logits, labels), rel=1e-4)


def test_margin_head_trains_with_fit_without_label_input():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, ArcFace(3, s=10.0)(keras.layers.Dense(4)(inputs)))
    x = np.random.default_rng(4).normal(size=(4, 6)).astype("float32")
    check_one_batch_fit(model, x, np.array([0, 1, 2, 1]), ArcFaceLoss(s=10.0))


def test_loss_config_roundtrip():
    loss = ArcFaceLoss(s=12.0, m=0.4, easy_margin=True)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, ArcFaceLoss)
    assert (clone.s, clone.m, clone.easy_margin) == (12.0, 0.4, True)
    assert CosFaceLoss.from_config(CosFaceLoss(s=3.0, m=0.2).get_config()).m == 0.2
