import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.layers import ArcFace, CosFace
from tests.harness import check_config_roundtrip, check_keras_file_roundtrip, check_mixed_precision


def np_arcface(cos, labels, s, m, easy_margin):
    """Deng et al. 2019 eq. (3) computed through the angle, with insightface's fallback."""
    theta = np.arccos(np.clip(cos, -1, 1))
    target = np.cos(theta + m)
    if easy_margin:
        target = np.where(cos > 0, target, cos)
    else:
        target = np.where(theta + m < math.pi, target, cos - math.sin(math.pi - m) * m)
    onehot = np.eye(cos.shape[1])[labels]
    return s * np.where(onehot == 1, target, cos)


def np_cosface(cos, labels, s, m):
    """Wang et al. 2018 eq. (4)."""
    return s * (cos - m * np.eye(cos.shape[1])[labels])


def angle_setup(num_classes=4):
    """2-D class centres and embeddings at known angles, so every cos value is exact by construction."""
    centre_angles = np.linspace(0, math.pi, num_classes, endpoint=False)
    kernel = np.stack([np.cos(centre_angles), np.sin(centre_angles)]).astype("float32")  # (2, C)
    # Angles to class 0 spanning [0, pi], including theta + m > pi for m = 0.5.
    emb_angles = np.array([0.0, 0.3, 1.2, 2.0, 2.7, 2.9, 3.1, math.pi])
    embedding = 3.0 * np.stack([np.cos(emb_angles), np.sin(emb_angles)], axis=1).astype("float32")
    cos = (embedding / np.linalg.norm(embedding, axis=1, keepdims=True)) @ kernel
    return kernel, embedding, cos


def built_head(head, kernel, embedding):
    head(embedding)
    head.kernel.assign(kernel)
    return head


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_matches_published_formula_including_theta_plus_m_beyond_pi(easy_margin):
    kernel, embedding, cos = angle_setup()
    labels = np.zeros(len(embedding), dtype="int32")
    head = built_head(ArcFace(4, s=30.0, m=0.5, easy_margin=easy_margin), kernel, embedding)
    got = keras.ops.convert_to_numpy(head(embedding, labels))
    np.testing.assert_allclose(got, np_arcface(cos, labels, 30.0, 0.5, easy_margin), atol=2e-4)
    # Rows with theta + m > pi (angles 2.7 .. pi) took the fallback branch: the target logit
    # still decreases with theta, so the margin never rewards a larger angle.
    if not easy_margin:
        target = got[:, 0]
        assert np.all(np.diff(target) < 0)
        assert math.acos(cos[4, 0]) + 0.5 > math.pi


def test_arcface_inference_is_scaled_cosine():
    kernel, embedding, cos = angle_setup()
    head = built_head(ArcFace(4, s=16.0), kernel, embedding)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(embedding)), 16.0 * cos, atol=1e-5)
    # Paper's sanity value: theta = 0 on the target gives s * cos(m).
    got = keras.ops.convert_to_numpy(head(embedding[:1], np.array([0])))
    assert got[0, 0] == pytest.approx(16.0 * math.cos(0.5), abs=1e-4)


def test_cosface_matches_published_formula():
    kernel, embedding, cos = angle_setup()
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    head = built_head(CosFace(4, s=20.0, m=0.35), kernel, embedding)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(head(embedding, labels)), np_cosface(cos, labels, 20.0, 0.35), atol=2e-4
    )


def test_negative_label_gets_no_margin():
    kernel, embedding, cos = angle_setup()
    head = built_head(ArcFace(4, s=10.0), kernel, embedding)
    got = keras.ops.convert_to_numpy(head(embedding, -np.ones(len(embedding), "int32")))
    np.testing.assert_allclose(got, 10.0 * cos, atol=1e-5)


@pytest.mark.parametrize("cls", [ArcFace, CosFace])
def test_gradients_finite_at_cos_plus_minus_one(cls):
    kernel = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")  # centres e1, e2
    embedding = tf.constant([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])  # cos = +1, -1, and 0/+1
    head = built_head(cls(2, s=30.0), kernel, embedding.numpy())
    labels = tf.constant([0, 0, 1])
    with tf.GradientTape() as tape:
        tape.watch(embedding)
        logits = head(embedding, labels)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads = tape.gradient(loss, [embedding, head.kernel])
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
    assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("cls", [ArcFace, CosFace])
def test_float32_logits_under_mixed_float16(cls):
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")

    def build():
        inputs = keras.Input((8,))
        emb = keras.layers.Dense(8)(inputs)  # float16 under the policy
        return keras.Model(inputs, cls(5)(emb))

    model = check_mixed_precision(build, x)
    assert model.layers[-1].kernel.dtype == "float32"


def test_config_and_keras_file_roundtrip_with_label_input(tmp_path):
    head = ArcFace(6, s=12.0, m=0.3, easy_margin=True, name="arc")
    x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    clone = check_config_roundtrip(head, x)
    assert (clone.s, clone.m, clone.easy_margin, clone.num_classes) == (12.0, 0.3, True, 6)
    emb_in, label_in = keras.Input((5,)), keras.Input((), dtype="int32")
    model = keras.Model([emb_in, label_in], CosFace(6, m=0.2)(emb_in, label_in))
    labels = np.array([0, 1, 2, 5], "int32")
    check_keras_file_roundtrip(model, [x, labels], tmp_path)
