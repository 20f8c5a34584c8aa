"""HubBackbone: a TF2 reusable SavedModel fine-tuned inside a Keras 3 model.

The tests build their own hub-format module with ``save_as_hub_module`` (no network), including
a BatchNorm so that training-mode updates of non-trainable variables are exercised too.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras_fgvc.config.compose import compose
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.export.saved_model import export_saved_model
from keras_fgvc.models import build_model
from keras_fgvc.models.backbones.hub import HubBackbone, save_as_hub_module

SIZE = 16


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    path = str(tmp_path_factory.mktemp("hub") / "module")
    save_as_hub_module(keras.Model(inputs, x), path, (SIZE, SIZE, 3))
    return path


def classifier(hub_dir):
    inputs = keras.Input((SIZE, SIZE, 3))
    backbone = HubBackbone(hub_dir, name="hub")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(backbone(inputs)))
    return model, backbone


def data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, SIZE, SIZE, 3)).astype("float32"), rng.integers(0, 2, n).astype("int32")


def variable(backbone, fragment):
    (match,) = [v for v in backbone.hub_variables if fragment in v.name]
    return match


def test_exposes_the_modules_variables_with_their_trainability(hub_dir):
    _, backbone = classifier(hub_dir)
    # conv kernel + bias, bn gamma + beta trainable; bn moving mean + variance not.
    assert len(backbone.trainable_weights) == 4 and len(backbone.non_trainable_weights) == 2
    restored = {id(v) for v in backbone._module.variables}
    assert {id(v._borrowed) for v in backbone.hub_variables} == restored


def test_one_fit_step_changes_the_variables_the_restored_graph_reads(hub_dir):
    model, backbone = classifier(hub_dir)
    x, y = data()
    kernel, moving_mean = variable(backbone, "kernel"), variable(backbone, "moving_mean")
    kernel_before, mean_before = kernel.numpy().copy(), moving_mean.numpy().copy()
    features_before = backbone(x, training=False).numpy()
    module_before = backbone._module(tf.constant(x), training=False).numpy()
    np.testing.assert_allclose(features_before, module_before, rtol=1e-6)

    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)

    assert np.abs(kernel.numpy() - kernel_before).max() > 1e-4
    assert np.abs(moving_mean.numpy() - mean_before).max() > 1e-6  # BN ran in training mode
    # The module itself (not a copy) now computes different features, equal to the layer's.
    module_after = backbone._module(tf.constant(x), training=False).numpy()
    assert np.abs(module_after - module_before).max() > 1e-4
    np.testing.assert_allclose(backbone(x, training=False).numpy(), module_after, rtol=1e-6)


def test_frozen_hub_does_not_train(hub_dir):
    inputs = keras.Input((SIZE, SIZE, 3))
    backbone = HubBackbone(hub_dir, trainable=False)
    model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)))
    assert backbone.trainable_weights == []
    x, y = data()
    kernel = variable(backbone, "kernel")
    before = kernel.numpy().copy()
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_array_equal(kernel.numpy(), before)
    backbone.trainable = True  # staged fine-tuning unfreezes the same variables, BN stats excepted
    assert len(backbone.trainable_weights) == 4 and len(model.trainable_weights) == 6


def test_keras_file_round_trip_restores_fine_tuned_values(hub_dir, tmp_path):
    model, _ = classifier(hub_dir)
    x, y = data()
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_build_model_with_hub_backbone_exports_a_bytes_signature(hub_dir, tmp_path):
    cfg = compose([
        "smoke=true", "model.backbone=hub", f"model.hub_handle={hub_dir}", f"data.image_size={SIZE}",
        "augment.preset=none",
    ])
    model = build_model(cfg, num_classes=2)
    images, labels = data(seed=3)
    pixels = np.round(images * 255)
    trainer = keras.Model(model.inputs, model.output["logits"])
    trainer.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(pixels, labels, batch_size=8, epochs=1, verbose=0)

    path = export_saved_model(model, str(tmp_path / "export"), image_size=SIZE)
    encoded = [tf.io.encode_png(p.astype(np.uint8)).numpy() for p in pixels]
    served = tf.saved_model.load(path).signatures["serving_default"](image_bytes=tf.constant(encoded))
    keras_pixels = np.stack([model_pixels(e, SIZE).numpy() for e in encoded])
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(keras_pixels, training=False)["logits"]))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["top_class"].numpy(), expected.argmax(1))
