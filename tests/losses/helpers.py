"""Gradient and reference helpers shared by the loss tests (TensorFlow backend)."""

import keras
import numpy as np
import tensorflow as tf


def value_and_grad(fn, x):
    """(value, d value / d x) of a scalar loss ``fn(x)`` by ``tf.GradientTape``, as NumPy."""
    x = tf.constant(np.asarray(x, dtype="float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(x)
    grad = tape.gradient(value, x)
    grad = np.zeros(x.shape, "float32") if grad is None else grad.numpy()
    return float(keras.ops.convert_to_numpy(value)), grad


def numeric_grad(f, x, step=1e-5):
    """Central finite differences of a float64 NumPy function ``f(x) -> float``."""
    x = np.asarray(x, dtype="float64")
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (f(up) - f(down)) / (2 * step)
    return grad


def np_log_softmax(logits):
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_softmax(logits):
    return np.exp(np_log_softmax(logits))
