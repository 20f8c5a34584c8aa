"""Shared checks so each component test stays short (DESIGN.md convention 9).

Each ``check_*`` asserts; none merely runs. Layers and models are small so the whole
suite stays within the CPU budget. One entry per kind of component, as in keras-hub:
``run_backbone_test`` (a registry backbone), ``run_layer_test`` (a layer class) and
``run_task_test`` (a full model, e.g. ``models.build_model``'s).
"""

import json
import pathlib
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.models.registry import get_backbone


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


# --- one entry per kind (as keras-hub's run_backbone_test / run_layer_test / run_task_test) -------------

BACKBONE_CHECKS = ("config", "shapes", "predict", "keras_file", "saved_model", "fit", "mixed_precision")
CHEAP_BACKBONE_CHECKS = ("config", "shapes", "predict")


def backbone_inputs(input_scale, input_shape, batch_size=2, seed=0):
    """A batch in the pixel range the registry says the backbone expects (see ``registry.INPUT_SCALES``):
    realistic magnitudes keep randomly initialised deep nets finite in float16."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, *input_shape)
    if input_scale == "raw":
        return rng.uniform(0, 255, shape).astype("float32")
    if input_scale == "unit":
        return rng.uniform(0, 1, shape).astype("float32")
    return rng.normal(size=shape).astype("float32")


def _numpy(tensors):
    return [keras.ops.convert_to_numpy(t) for t in tf.nest.flatten(tensors)]


def _assert_outputs_close(actual, expected, atol=1e-5, rtol=1e-5):
    for a, e in zip(_numpy(actual), _numpy(expected), strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=rtol)


def check_json_roundtrip(model, x, atol=1e-5):
    """``model_from_json(model.to_json())`` has an equal config and, with the weights copied, equal outputs.

    Configs are compared as JSON: the round trip turns tuples (e.g. ``build_config`` shapes) into lists.
    """
    text = model.to_json()
    clone = keras.models.model_from_json(text)
    assert json.loads(clone.to_json()) == json.loads(text)
    clone.set_weights(model.get_weights())
    _assert_outputs_close(clone(x, training=False), model(x, training=False), atol=atol)
    return clone


def check_saved_model_roundtrip(model, x, path, atol=1e-4):
    """``model.export`` -> ``tf.saved_model.load(path).serve(x)`` equals the Keras output."""
    model.export(str(path), verbose=False)
    loaded = tf.saved_model.load(str(path))  # keep a reference: serve() reads the loaded object's variables
    served = loaded.serve(tf.constant(x))
    _assert_outputs_close(served, model(x, training=False), atol=atol, rtol=atol)
    return served


def check_fit_trains_backbone(backbone, x, classes=3):
    """One SGD step through a tiny pooled Dense head gives a finite loss and changes backbone weights."""
    features = backbone.output
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="probe_pool")(features)
    logits = keras.layers.Dense(classes, dtype="float32", name="probe_logits")(features)
    model = keras.Model(backbone.input, logits)
    before = [w.numpy().copy() for w in backbone.trainable_weights]
    assert before, f"{backbone.name} has no trainable weights"
    labels = np.arange(len(x)) % classes
    check_one_batch_fit(model, x, labels, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, backbone.trainable_weights)]
    # Not every weight need move (a ReLU can zero a gradient), but a backbone that trains moves most.
    assert np.mean(changed) > 0.5, f"only {sum(changed)}/{len(changed)} backbone weights changed"


def check_mixed_precision_backbone(build_fn, x, reference, policy="mixed_float16", rtol=0.05):
    """Under ``policy`` the backbone computes and emits half precision, keeps float32 variables, and
    (given ``reference``, the float32 model) matches it to half-precision accuracy with the same weights."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_fn()
    finally:
        keras.config.set_dtype_policy(previous)
    compute_dtype = keras.mixed_precision.DTypePolicy(policy).compute_dtype
    model.set_weights(reference.get_weights())
    assert {keras.backend.standardize_dtype(v.dtype) for v in model.trainable_weights} == {"float32"}
    y, y32 = _numpy(model(x, training=False)), _numpy(reference(x, training=False))
    for half, full in zip(y, y32, strict=True):
        assert keras.backend.standardize_dtype(half.dtype) == compute_dtype, half.dtype
        assert np.all(np.isfinite(half))
        error = np.abs(half.astype("float32") - full).max()
        assert error <= rtol * np.abs(full).max() + 1e-3, f"{policy} differs from float32 by {error}"
    return model


def run_backbone_test(name, input_shape, *, checks=BACKBONE_CHECKS, batch_size=2, expected_output_shape=None,
                      **options):
    """Build registry backbone ``name`` at ``input_shape`` with builder ``options`` and run ``checks``.

    Checks (each can be left out of ``checks``; the heavy ones are fit, saved_model, mixed_precision
    and keras_file): config (JSON round-trip, equal outputs), shapes (eager == symbolic, finite,
    ``expected_output_shape`` without the batch axis when given), predict (tf.data == direct call),
    keras_file (.keras round-trip), saved_model (``model.export`` -> ``serve``), fit (one SGD step
    through a pooled Dense head moves the backbone's weights), mixed_precision (float16 compute,
    float32 variables, close to float32).

    Example:
        >>> run_backbone_test("resnet50", (32, 32, 3), checks=CHEAP_BACKBONE_CHECKS, width=1 / 16)
    """
    unknown = set(checks) - set(BACKBONE_CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {BACKBONE_CHECKS}")
    entry = get_backbone(name)

    def build():
        return entry.builder(tuple(input_shape), **options)

    model = build()
    x = backbone_inputs(entry.input_scale, input_shape, batch_size)
    if "shapes" in checks:
        eager = check_symbolic_matches_eager(model, x)
        assert tuple(model.output.shape)[1:] == tuple(eager.shape)[1:]
        if expected_output_shape is not None:
            assert tuple(eager.shape) == (batch_size, *expected_output_shape), eager.shape
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(eager)))
    if "config" in checks:
        check_json_roundtrip(model, x)
    if "predict" in checks:
        check_predict_on_dataset(model, x, batch_size=max(1, batch_size // 2))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        if "keras_file" in checks:
            check_keras_file_roundtrip(model, x, tmp)
        if "saved_model" in checks:
            check_saved_model_roundtrip(model, x, tmp / "saved_model")
    if "mixed_precision" in checks:
        check_mixed_precision_backbone(build, x, model)
    if "fit" in checks:  # last: it changes the weights the other checks compare
        check_fit_trains_backbone(model, x)
    return model


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape, *, expected_output_dtype=None,
                   run_training_check=True):
    """A layer from ``init_kwargs``: config round-trip with equal outputs, the eager output shape and
    dtype, the symbolic shape (eager and inside a functional model), and deterministic inference.

    Example:
        >>> run_layer_test(SplitAttention, {"filters": 8, "radix": 2}, x, (2, 5, 5, 8))
    """
    layer = layer_cls(**init_kwargs)
    y = layer(input_data, training=False)
    assert tuple(y.shape) == tuple(expected_output_shape), (y.shape, expected_output_shape)
    if expected_output_dtype is not None:
        assert keras.backend.standardize_dtype(y.dtype) == expected_output_dtype, y.dtype
    check_symbolic_matches_eager(layer, input_data)
    symbolic = layer(keras.Input(tuple(input_data.shape)[1:]))
    assert tuple(symbolic.shape) == (None, *tuple(expected_output_shape)[1:])
    _assert_outputs_close(layer(input_data, training=False), y, atol=0, rtol=0)  # inference is deterministic
    if run_training_check:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(layer(input_data, training=True))))
    for key, value in init_kwargs.items():
        assert layer.get_config()[key] == value, key
    check_config_roundtrip(layer, input_data)
    return layer


def run_task_test(build_fn, x, y, loss, *, batch_size=None):
    """A full model (``models.build_model`` output): predict on tf.data equals a direct call, one
    ``fit`` step is finite and moves weights, and the ``.keras`` round-trip gives equal outputs.

    ``x``/``y`` may be arrays or dicts of arrays; ``loss`` is what ``compile`` takes (a dict per output).

    Example:
        >>> run_task_test(lambda: build_model(cfg, 3), images, {"logits": labels},
        ...               {"logits": "sparse_categorical_crossentropy"})
    """
    model = build_fn()
    check_predict_on_dataset(model, x, batch_size=batch_size or 2)
    n = len(tf.nest.flatten(x)[0])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=batch_size or n, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert np.mean(changed) > 0.5, f"only {sum(changed)}/{len(changed)} weights changed after one fit step"
    with tempfile.TemporaryDirectory() as tmp:
        check_keras_file_roundtrip(model, x, pathlib.Path(tmp))
    return model
