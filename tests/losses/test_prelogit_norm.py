"""Pre-logit norm against facenet's train_softmax.py: mean_i || |x_i| + 1e-4 ||_p."""

import numpy as np
import pytest

from keras_fgvc.losses import PreLogitNormLoss
from tests.losses.helpers import numeric_grad, value_and_grad


def features(seed=0):
    return np.random.default_rng(seed).normal(size=(5, 4)).astype("float32")


def np_prelogit_norm(x, p=1.0, eps=1e-4):
    return (((np.abs(x) + eps) ** p).sum(axis=1) ** (1.0 / p)).mean()


def test_default_is_facenet_p1_form_with_sign_gradient():
    x = features()
    value, grad = value_and_grad(lambda e: PreLogitNormLoss()(None, e), x)
    assert value == pytest.approx((np.abs(x) + 1e-4).sum(axis=1).mean(), rel=1e-5)
    np.testing.assert_allclose(grad, np.sign(x) / len(x), atol=1e-7)


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_p_norm_value_and_gradient(p):
    x = features(seed=1)
    value, grad = value_and_grad(lambda e: PreLogitNormLoss(p=p)(np.zeros(len(x)), e), x)
    assert value == pytest.approx(np_prelogit_norm(x, p), rel=1e-5)
    assert value != pytest.approx(np_prelogit_norm(x, 1.0), rel=1e-2)
    np.testing.assert_allclose(grad, numeric_grad(lambda e: np_prelogit_norm(e, p), x), atol=1e-5)


def test_zero_features_have_finite_gradient_for_p2():
    _, grad = value_and_grad(lambda e: PreLogitNormLoss(p=2.0)(None, e), np.zeros((2, 3), "float32"))
    assert np.all(np.isfinite(grad))


def test_config_roundtrip_and_range_check():
    clone = PreLogitNormLoss.from_config(PreLogitNormLoss(p=2.0, epsilon=1e-5, name="pln").get_config())
    assert (clone.p, clone.epsilon, clone.name) == (2.0, 1e-5, "pln")
    with pytest.raises(ValueError, match="p must be"):
        PreLogitNormLoss(p=0.5)
