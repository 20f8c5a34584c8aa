import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.config.compose import compose
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.errors import UserError
from keras_fgvc.export.saved_model import export_saved_model
from keras_fgvc.models import build_model

SIZE = 32


def small_model(classes=4):
    """The build_model contract in miniature: pixels in [0, 255] -> {"embedding" (L2), "logits"}."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.Dense(6)(x)
    logits = keras.layers.Dense(classes, dtype="float32")(embedding)
    return keras.Model(inputs, {"embedding": keras.layers.UnitNormalization()(embedding), "logits": logits})


def encoded_images():
    """Files as a client sends them: JPEG and PNG, RGB and greyscale, sizes other than 32."""
    rng = np.random.default_rng(0)
    files = []
    for fmt, mode, shape in [("JPEG", "RGB", (40, 56, 3)), ("PNG", "L", (24, 30)), ("PNG", "RGBA", (32, 32, 4))]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, format=fmt)
        files.append(buffer.getvalue())
    return files


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    # The real contract: build_model's GhostNet with its standardisation layer and L2 embedding.
    cfg = compose(["smoke=true", "model.backbone=ghostnet_050", f"data.image_size={SIZE}", "augment.preset=none"])
    model = build_model(cfg, num_classes=4)
    path = export_saved_model(model, str(tmp_path_factory.mktemp("sm") / "classifier"), image_size=SIZE)
    return model, tf.saved_model.load(path)


def keras_reference(model, files):
    pixels = tf.stack([model_pixels(tf.constant(f), SIZE) for f in files])
    outputs = model(pixels, training=False)
    logits = outputs["logits"].numpy().astype(np.float64)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True), outputs["embedding"].numpy()


def test_serving_default_on_raw_bytes_equals_keras(exported):
    model, reloaded = exported
    files = encoded_images()
    probabilities, _ = keras_reference(model, files)
    served = reloaded.signatures["serving_default"](image_bytes=tf.constant(files))
    np.testing.assert_allclose(served["probabilities"].numpy(), probabilities, atol=1e-5)
    np.testing.assert_array_equal(served["top_class"].numpy(), probabilities.argmax(-1))
    assert served["top_class"].dtype == tf.int32


def test_embed_signature_is_l2_normalised_keras_embedding(exported):
    model, reloaded = exported
    files = encoded_images()
    _, embedding = keras_reference(model, files)
    served = reloaded.signatures["embed"](image_bytes=tf.constant(files))["embedding"].numpy()
    assert served.shape == (3, model.output["embedding"].shape[-1])
    np.testing.assert_allclose(np.linalg.norm(served, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, embedding, atol=1e-5)


def test_existing_directory_is_kept_unless_overwrite(tmp_path):
    model = small_model()
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("earlier run")
    with pytest.raises(UserError, match="already exists"):
        export_saved_model(model, str(target), image_size=SIZE)
    assert os.listdir(target) == ["keep.txt"] and (target / "keep.txt").read_text() == "earlier run"

    export_saved_model(model, str(target), image_size=SIZE, overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "saved_model.pb").exists()
    assert os.listdir(tmp_path) == ["export"]  # the staging directory was renamed, none left behind
    served = tf.saved_model.load(str(target)).signatures["serving_default"](image_bytes=tf.constant(encoded_images()[:1]))
    np.testing.assert_allclose(served["probabilities"].numpy(), keras_reference(model, encoded_images()[:1])[0], atol=1e-5)


def test_class_mapping_and_resize_policy_travel_with_the_export(tmp_path):
    from keras_fgvc.data import classes as class_map

    model = small_model()
    hotel_ids = [31, 7, 1024, 5]  # original ids in index order
    path = export_saved_model(model, str(tmp_path / "export"), image_size=SIZE, classes=hotel_ids, resize="crop")
    assert class_map.load(path) == hotel_ids
    files = encoded_images()
    served = tf.saved_model.load(path).signatures["serving_default"](image_bytes=tf.constant(files))
    pixels = tf.stack([model_pixels(tf.constant(f), SIZE, policy="crop") for f in files])
    expected = model(pixels, training=False)["logits"].numpy().argmax(-1)
    np.testing.assert_array_equal(served["top_class"].numpy(), expected)
    assert [v.decode() for v in served["class_id"].numpy()] == [str(hotel_ids[i]) for i in expected]


def test_a_binary_decision_threshold_decides_top_class(tmp_path):
    import json

    from keras_fgvc.export.saved_model import DECISION_FILE

    keras.utils.set_random_seed(3)
    model = small_model(classes=2)
    files = encoded_images()
    positive = keras_reference(model, files)[0][:, 1]
    threshold = float(np.median(positive))  # between the rows' P(1): some rows on each side
    path = export_saved_model(model, str(tmp_path / "binary"), image_size=SIZE, decision_threshold=threshold)
    served = tf.saved_model.load(path).signatures["serving_default"](image_bytes=tf.constant(files))
    np.testing.assert_array_equal(served["top_class"].numpy(), (positive >= threshold).astype(int))
    assert 0 < served["top_class"].numpy().sum() < len(files)
    assert json.loads((tmp_path / "binary" / DECISION_FILE).read_text())["decision_threshold"] == threshold
    with pytest.raises(ValueError, match="needs a binary model"):
        export_saved_model(small_model(classes=4), str(tmp_path / "four"), image_size=SIZE, decision_threshold=0.5)
