"""Generic checks every augmentation layer must pass (kept here: tests/harness.py is shared and frozen)."""

import keras
import numpy as np
import tensorflow as tf

from tests.harness import check_config_roundtrip


def images(batch=4, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3)).astype("float32")


def check_augmentation_layer(make_layer, x, output_hw=None):
    """Eager batched/unbatched, tf.data (batched and per image), range, training=False identity,
    config round-trip and a symbolic Keras input."""
    layer = make_layer()
    hw = output_hw or x.shape[1:3]
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    assert y.shape == (len(x), *hw, x.shape[-1]) and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 255.0
    single = keras.ops.convert_to_numpy(layer(x[0], training=True))
    assert single.shape == (*hw, x.shape[-1])

    batched = tf.data.Dataset.from_tensor_slices(x).batch(2).map(lambda a: layer(a, training=True))
    per_image = tf.data.Dataset.from_tensor_slices(x).map(lambda a: layer(a, training=True))
    assert [tuple(b.shape) for b in batched] == [(2, *hw, x.shape[-1])] * (len(x) // 2)
    assert all(tuple(b.shape) == (*hw, x.shape[-1]) for b in per_image)

    if output_hw is None:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
        check_config_roundtrip(layer, x)
    else:
        check_config_roundtrip(layer)

    inputs = keras.Input(x.shape[1:])
    assert tuple(layer(inputs).shape) == (None, *hw, x.shape[-1])
    return y


def check_mixed_precision_layer(make_layer, x, output_hw=None):
    """Under mixed_float16 the layer takes float16 input and emits finite float16 in [0, 255]."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = make_layer()
        for inputs in (x.astype("float16"), x):
            y = layer(inputs, training=True)
            assert keras.backend.standardize_dtype(y.dtype) == "float16"
            y = keras.ops.convert_to_numpy(y).astype("float32")
            assert np.all(np.isfinite(y)) and y.min() >= 0 and y.max() <= 255
            assert y.shape[1:3] == tuple(output_hw or x.shape[1:3])
        ds = tf.data.Dataset.from_tensor_slices(x.astype("float16")).batch(2).map(lambda a: layer(a, training=True))
        assert all(b.dtype == tf.float16 for b in ds)
    finally:
        keras.config.set_dtype_policy(previous)


def differs_per_image(y, x):
    """Which images changed."""
    return np.abs(y - x).reshape(len(x), -1).max(axis=1) > 1e-3
