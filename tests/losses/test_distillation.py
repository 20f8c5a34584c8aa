"""Distillation loss against Hinton et al. 2015: alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || student_T)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.losses import KnowledgeDistillationLoss
from tests.losses.helpers import np_log_softmax, np_softmax, value_and_grad


def batch(seed=0):
    rng = np.random.default_rng(seed)
    student = rng.normal(scale=2.0, size=(5, 4)).astype("float32")
    teacher = rng.normal(scale=3.0, size=(5, 4)).astype("float32")
    return rng.integers(0, 4, size=5), student, teacher


def np_distillation(labels, student, teacher, temperature, alpha):
    hard = -np_log_softmax(student)[np.arange(len(labels)), labels]
    log_t, log_s = np_log_softmax(teacher / temperature), np_log_softmax(student / temperature)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(axis=1)
    return (alpha * hard + (1 - alpha) * temperature**2 * kl).mean()


@pytest.mark.parametrize("temperature,alpha", [(4.0, 0.1), (2.0, 0.5), (1.0, 0.0)])
def test_value_and_student_gradient_match_hand_computed_mix(temperature, alpha):
    labels, student, teacher = batch()
    loss = KnowledgeDistillationLoss(temperature=temperature, alpha=alpha)
    value, grad = value_and_grad(lambda s: loss.call_with_teacher(labels, s, teacher), student)
    assert value == pytest.approx(np_distillation(labels, student, teacher, temperature, alpha), rel=1e-5)
    # d/ds: alpha (softmax(s) - onehot) + (1 - alpha) T (softmax(s/T) - softmax(t/T)), per batch mean.
    expected = alpha * (np_softmax(student) - np.eye(4)[labels])
    expected += (1 - alpha) * temperature * (np_softmax(student / temperature) - np_softmax(teacher / temperature))
    np.testing.assert_allclose(grad, expected / len(labels), atol=1e-6)


def test_teacher_gets_no_gradient():
    labels, student, teacher = batch(seed=1)
    teacher = tf.constant(teacher)
    with tf.GradientTape() as tape:
        tape.watch(teacher)
        value = KnowledgeDistillationLoss().call_with_teacher(labels, student, teacher)
    assert tape.gradient(value, teacher) is None


def test_soft_term_equals_keras_logits_distillation_with_a_kl_instance():
    labels, student, teacher = batch(seed=2)
    ours = KnowledgeDistillationLoss(temperature=3.0, alpha=0.0).call_with_teacher(labels, student, teacher)
    keras_kd = keras.distillation.LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())
    assert float(ours) == pytest.approx(float(keras_kd.compute_loss(teacher, student)), rel=1e-5)


def test_alpha_one_is_plain_cross_entropy():
    labels, student, teacher = batch(seed=3)
    got = float(KnowledgeDistillationLoss(alpha=1.0).call_with_teacher(labels, student, teacher))
    assert got == pytest.approx(-np_log_softmax(student)[np.arange(5), labels].mean(), rel=1e-5)


def test_plain_call_and_mismatched_logits_raise():
    labels, student, teacher = batch(seed=4)
    loss = KnowledgeDistillationLoss()
    assert loss.needs_teacher is True
    with pytest.raises(TypeError, match="call_with_teacher"):
        loss(labels, student)
    with pytest.raises(ValueError, match="differ"):
        loss.call_with_teacher(labels, student, teacher[:, :3])


def test_config_roundtrip_and_range_checks():
    clone = KnowledgeDistillationLoss.from_config(KnowledgeDistillationLoss(8.0, 0.3, name="kd").get_config())
    assert (clone.temperature, clone.alpha, clone.name) == (8.0, 0.3, "kd")
    with pytest.raises(ValueError, match="temperature"):
        KnowledgeDistillationLoss(temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        KnowledgeDistillationLoss(alpha=2.0)
