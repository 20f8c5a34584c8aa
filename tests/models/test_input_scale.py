"""``model.input_scale``: the pixel range a backbone is fed, set by config, kept by the export.

Every model takes [0, 255] pixels; the scale is a layer inside it, so the exported SavedModel
(which decodes bytes and calls the model) applies the same scale as the Keras model.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.config.compose import compose
from keras_fgvc.config.validate import ConfigError
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.export.saved_model import export_saved_model
from keras_fgvc.models import build_model
from keras_fgvc.models.backbones.hub import save_as_hub_module

SIZE = 16
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
# Each row: one uniform image's (R, G, B) values in [0, 255].
PIXELS = np.array([[0, 0, 0], [255, 255, 255], [127.5, 51, 204], [10, 200, 90]], "float32")
REFERENCE = {  # NumPy: what the backbone must receive for each config value
    "unit": PIXELS / 255,
    "symmetric": PIXELS / 127.5 - 1,
    "imagenet": (PIXELS / 255 - np.array(MEAN)) / np.array(STD),
    "raw": PIXELS,
    "auto": PIXELS / 255,  # a hub module's registered scale
    None: PIXELS / 255,
}


def hub_module(tmp_path_factory, features):
    inputs = keras.Input((SIZE, SIZE, 3))
    path = str(tmp_path_factory.mktemp("hub") / "module")
    save_as_hub_module(keras.Model(inputs, features(inputs)), path, (SIZE, SIZE, 3))
    return path


@pytest.fixture(scope="module")
def identity_hub(tmp_path_factory):
    """A module that returns its input: the model's pooled features are the scaled pixels."""
    return hub_module(tmp_path_factory, keras.layers.Identity())


@pytest.fixture(scope="module")
def conv_hub(tmp_path_factory):
    keras.utils.set_random_seed(3)
    conv, bn = keras.layers.Conv2D(6, 3, name="conv"), keras.layers.BatchNormalization(name="bn")
    return hub_module(tmp_path_factory, lambda x: keras.layers.GlobalAveragePooling2D()(bn(conv(x))))


def configured(handle, *overrides):
    return compose(["smoke=true", "model.backbone=hub", f"model.hub_handle={handle}", f"data.image_size={SIZE}",
                    "model.dropout=0.0", f"model.mean={MEAN}", f"model.std={STD}", *overrides])


@pytest.mark.parametrize("scale", list(REFERENCE))
def test_each_scale_maps_pixels_to_its_range(identity_hub, scale):
    value = "null" if scale is None else scale
    model = build_model(configured(identity_hub, f"model.input_scale={value}"), num_classes=2)
    features = keras.Model(model.input, model.get_layer("pre_logits").output)
    images = np.broadcast_to(PIXELS[:, None, None, :], (len(PIXELS), SIZE, SIZE, 3))
    np.testing.assert_allclose(features.predict(images, verbose=0), REFERENCE[scale], rtol=1e-5, atol=1e-5)


def test_a_bad_scale_is_a_config_error(identity_hub):
    with pytest.raises(ConfigError, match=r"model.input_scale.*choose one of: None, auto, unit, symmetric"):
        configured(identity_hub, "model.input_scale=minus_one_to_one")
    with pytest.raises(ConfigError, match=r"train.stages.0.model.input_scale"):
        configured(identity_hub, "+train.stages.0.model={input_scale: zero_one}")


def test_symmetric_scale_round_trips_through_the_export(conv_hub, tmp_path):
    model = build_model(configured(conv_hub, "model.input_scale=symmetric"), num_classes=3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, SIZE, SIZE, 3)).astype(np.uint8)
    encoded = [tf.io.encode_png(image).numpy() for image in images]
    path = export_saved_model(model, str(tmp_path / "export"), image_size=SIZE)
    served = tf.saved_model.load(path).signatures["serving_default"](image_bytes=tf.constant(encoded))

    pixels = np.stack([model_pixels(e, SIZE).numpy() for e in encoded])
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(pixels, training=False)["logits"]))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    # The scale is in the exported graph: the same weights fed [0, 1] give other outputs.
    unit = build_model(configured(conv_hub, "model.input_scale=unit"), num_classes=3)
    unit.set_weights(model.get_weights())
    unit_probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(unit(pixels, training=False)["logits"]))
    assert np.abs(served["probabilities"].numpy() - unit_probabilities).max() > 1e-3
    names = [layer.name for layer in model.layers]
    assert "to_symmetric" in names and "to_unit" not in names
