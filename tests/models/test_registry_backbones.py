"""Every backbone registered by the ghostnet/squeezenext/resnet/inception_resnet families.

Cheap but real: heavy families build at a reduced ``width`` (same block structure) so the whole
battery runs on a laptop CPU.
"""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.models.backbones.ghostnet import GHOSTNET_WIDTHS
from keras_fgvc.models.backbones.resnet import RESNET_CFG
from keras_fgvc.models.backbones.squeezenext import SQUEEZENEXT_VARIANTS
from keras_fgvc.models.registry import get_backbone, list_backbones
from tests.harness import (
    check_keras_file_roundtrip,
    check_one_batch_fit,
    check_predict_on_dataset,
)

# Builder kwargs that keep each family tiny without changing its structure.
CHEAP_KWARGS = {name: {"out_channels": 32} for name in GHOSTNET_WIDTHS}
CHEAP_KWARGS.update({name: {} for name in SQUEEZENEXT_VARIANTS})
CHEAP_KWARGS.update({name: {"width": 1 / 16} for name in RESNET_CFG})
OWNED = sorted(CHEAP_KWARGS)
# The full battery (gradients, config and .keras round-trips, predict, fit) traces several
# tf.functions per model (~10 s each here): GhostNet (SE, depthwise) and ResNeSt (custom
# SplitAttention layer, grouped conv, avg-down) run always; the other block kinds under -m slow.
BATTERY = ["ghostnet_050", "resnest50d"] + [
    pytest.param(name, marks=pytest.mark.slow) for name in ("squeezenext_23v5_100", "resnet50", "seresnext50_32x4d")
]


def images(size, channels, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, channels)).astype("float32")


def build(name, size, channels):
    return get_backbone(name).builder((size, size, channels), **CHEAP_KWARGS[name])


def test_every_owned_family_is_registered():
    registered = set(list_backbones())
    assert set(OWNED) | {"inception_resnet_v2"} <= registered
    assert get_backbone("inception_resnet_v2").input_scale == "raw"
    assert get_backbone("ghostnet_100").input_scale == "standardize"


@pytest.mark.parametrize("name", OWNED)
def test_greyscale_builds_and_runs_at_two_sizes_without_nan(name):
    # RGB builds of every variant are covered by the parameter-count tests and the battery.
    model = get_backbone(name).builder((None, None, 1), **CHEAP_KWARGS[name])
    for size in (32, 64):
        y = keras.ops.convert_to_numpy(model(images(size, 1), training=False))
        assert np.all(np.isfinite(y))
        if name in GHOSTNET_WIDTHS:
            assert y.shape == (2, 32)  # pre-logits vector
        else:
            assert y.shape[:3] == (2, size // 32, size // 32)  # stride-32 feature map


def check_model_config_roundtrip(model, x):
    """Like harness.check_config_roundtrip, but copies the config first: Functional.from_config
    consumes (mutates) the dict it is given, so comparing against it afterwards is meaningless."""
    config = model.get_config()
    clone = model.__class__.from_config(copy.deepcopy(config))
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        atol=1e-5,
    )


def wrap_classifier(backbone, classes=3):
    x = backbone.output
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(backbone.input, keras.layers.Dense(classes)(x))


@pytest.mark.parametrize("name", BATTERY)
def test_battery(name, tmp_path):
    x = images(64, 3, batch=4, seed=1)
    model = build(name, 64, 3)

    # Every trainable weight gets a finite, non-zero gradient.
    probe = tf.constant(np.random.default_rng(2).normal(size=model.output.shape[1:]).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) * probe)
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None, w.path
        g = keras.ops.convert_to_numpy(tf.convert_to_tensor(g))
        assert np.all(np.isfinite(g)) and np.any(g != 0), w.path

    check_model_config_roundtrip(model, x)
    check_keras_file_roundtrip(model, x, tmp_path)
    check_predict_on_dataset(model, x)
    check_one_batch_fit(wrap_classifier(model), x, np.array([0, 1, 2, 1]), "sparse_categorical_crossentropy")


def test_inception_resnet_v2_structure_at_smallest_input():
    model = get_backbone("inception_resnet_v2").builder((75, 75, 1))
    # [0, 255] pixels in (input_scale "raw"): the model rescales to [-1, 1] itself.
    y = keras.ops.convert_to_numpy(model(np.full((1, 75, 75, 1), 255.0, "float32")))
    assert y.shape == (1, 1, 1, 1536) and np.all(np.isfinite(y))
    # keras.applications' RGB count (54,336,736) minus the stem conv's 2 x (3 x 3 x 32) extra input weights.
    assert model.count_params() == 54_336_736 - 2 * 288
    with pytest.raises(ValueError, match="75"):
        get_backbone("inception_resnet_v2").builder((64, 64, 3))
    with pytest.raises(FileNotFoundError):
        get_backbone("inception_resnet_v2").builder((75, 75, 3), weights="/nonexistent.weights.h5")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_resnet_v2", "resnet101", "resnest101e", "seresnext101_32x4d"])
def test_heavy_backbones_full_size_fit(name):
    kwargs = {} if name == "inception_resnet_v2" else {"width": 0.25}
    model = get_backbone(name).builder((96, 96, 3), **kwargs)
    x = images(96, 3, batch=2) * 50 + 128
    check_one_batch_fit(wrap_classifier(model), x, np.array([0, 1]), "sparse_categorical_crossentropy")
