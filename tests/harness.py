"""Shared checks so each component test stays short (DESIGN.md convention 9).

Each ``check_*`` asserts; none merely runs. Layers and models are small so the whole
suite stays within the CPU budget.
"""

import keras
import numpy as np
import tensorflow as tf


def check_config_roundtrip(layer, x=None, atol=1e-6):
    """``from_config(get_config())`` rebuilds an equal config and, given weights, equal outputs."""
    config = layer.get_config()
    # from_config may consume nested dicts (Keras deserialises in place), so give it a fresh one.
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == config
    if x is not None:
        y = layer(x, training=False)
        clone(x, training=False)  # build
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(clone(x, training=False)),
            keras.ops.convert_to_numpy(y),
            atol=atol,
        )
    return clone


def check_symbolic_matches_eager(layer, x):
    """The symbolic output shape equals the eager output shape (batch dim left free)."""
    eager = layer(x, training=False)
    symbolic = layer.compute_output_spec(keras.KerasTensor(x.shape, dtype=x.dtype))
    for e, s in zip(tf.nest.flatten(eager), tf.nest.flatten(symbolic)):
        assert tuple(e.shape) == tuple(s.shape), (e.shape, s.shape)
    return eager


def check_predict_on_dataset(model, x, batch_size=2):
    """``predict`` over a tf.data pipeline equals a direct call on the same inputs."""
    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
    predicted = model.predict(ds, verbose=0)
    direct = model(x, training=False)
    for p, d in zip(tf.nest.flatten(predicted), tf.nest.flatten(direct)):
        np.testing.assert_allclose(p, keras.ops.convert_to_numpy(d), rtol=1e-4, atol=1e-4)
    return predicted


def check_one_batch_fit(model, x, y, loss, optimizer=None):
    """One ``fit`` step gives a finite loss and changes every trainable weight that has a gradient."""
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1), loss=loss)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert any(changed), "no trainable weight changed after one fit step"
    return history


def check_keras_file_roundtrip(model, x, tmp_path, atol=1e-5):
    """Saving to ``.keras`` and loading back gives identical outputs."""
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for a, b in zip(tf.nest.flatten(model(x, training=False)), tf.nest.flatten(reloaded(x, training=False))):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=atol)
    return reloaded


def check_mixed_precision(build_fn, x, policy="mixed_float16", output_dtypes=("float32",)):
    """Under a mixed policy the model computes in half precision but emits float32 outputs."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_fn()
        outputs = tf.nest.flatten(model(x, training=False))
        for out, dtype in zip(outputs, output_dtypes * len(outputs)):
            assert keras.backend.standardize_dtype(out.dtype) == dtype, out.dtype
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))
        return model
    finally:
        keras.config.set_dtype_policy(previous)
