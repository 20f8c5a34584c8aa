import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.errors import UserError
from keras_fgvc.export.tflite import _dequantize, _quantize, compare_with_keras, export_tflite, tflite_predict
from keras_fgvc.models.backbones.ghostnet import GhostNet

SIZE = 32


def tinted_images(n, seed):
    """Noise images where class c lifts channel c by a random amount: learnable, not trivial
    (weak tints are ambiguous), so a trained model has real margins for int8 to disturb."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0, 255, (n, SIZE, SIZE, 3))
    strength = rng.uniform(0.05, 0.6, n)
    rows = np.arange(n)
    images[rows, :, :, labels] = images[rows, :, :, labels] * (1 - strength[:, None, None]) + 255 * strength[:, None, None]
    return np.round(images).astype("float32"), labels


def small_classifier():
    """The build_model contract in miniature: pixels in [0, 255] -> {"embedding", "logits"}."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.Dense(8)(x)
    logits = keras.layers.Dense(3, dtype="float32", name="logits")(embedding)
    return keras.Model(inputs, {"embedding": keras.layers.UnitNormalization()(embedding), "logits": logits})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.utils.set_random_seed(0)
    train_x, train_y = tinted_images(192, seed=0)
    val_x, val_y = tinted_images(64, seed=1)
    model = small_classifier()
    trainer = keras.Model(model.inputs, model.get_layer("logits").output)
    trainer.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(train_x, train_y, epochs=40, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("tflite")
    float_path = export_tflite(model, str(folder / "model_float32.tflite"), SIZE)
    int8_path = export_tflite(
        model, str(folder / "model_int8.tflite"), SIZE, quantization="int8", representative_images=train_x[:64]
    )
    return model, val_x, val_y, float_path, int8_path


def softmax_reference(model, images):
    logits = model.predict(images, verbose=0)["logits"].astype(np.float64)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def io_details(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def test_float32_file_matches_keras_probabilities(trained):
    model, val_x, val_y, float_path, _ = trained
    expected = softmax_reference(model, val_x)
    got = tflite_predict(float_path, val_x, batch_size=24)  # 64 = 24 + 24 + 16: a resized last batch
    assert got.shape == (64, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)
    report = compare_with_keras(model, float_path, val_x, val_y)
    assert report["num_images"] == 64
    assert report["max_abs_diff"] <= 1e-4
    assert report["top1_agreement"] == 1.0
    assert report["keras_accuracy"] == pytest.approx(np.mean(expected.argmax(-1) == val_y))
    assert report["tflite_accuracy"] == report["keras_accuracy"]


def test_int8_file_is_integer_and_agrees_on_a_model_with_real_predictions(trained):
    model, val_x, val_y, _, int8_path = trained
    expected = softmax_reference(model, val_x)
    # Not trivial: the model predicts every class and is far above chance (1/3).
    assert len(np.unique(expected.argmax(-1))) == 3
    assert np.mean(expected.argmax(-1) == val_y) >= 0.8
    inputs, outputs = io_details(int8_path)
    assert inputs["dtype"] == np.uint8 and outputs["dtype"] == np.uint8
    assert inputs["quantization"] == (1.0, 0)  # pixels enter unchanged
    # TFLite fixes uint8 softmax outputs at scale 1/256, zero point 0 (LiteRT quantisation spec).
    assert outputs["quantization"] == (1 / 256, 0)
    got = tflite_predict(int8_path, val_x)
    np.testing.assert_array_equal(got * 256, np.round(got * 256))
    report = compare_with_keras(model, int8_path, val_x, val_y)
    print(f"int8 vs Keras: {report}")
    assert report["top1_agreement"] >= 0.9
    assert report["max_abs_diff"] < 0.1
    assert report["tflite_accuracy"] >= report["keras_accuracy"] - 0.05


def test_quantize_helpers_follow_the_affine_scheme():
    # real = scale * (q - zero_point) (LiteRT quantisation spec), with rounding and saturation.
    details = {"dtype": np.int8, "quantization": (0.5, -10)}
    values = np.array([-100.0, -5.2, 0.0, 0.74, 200.0], dtype=np.float32)
    q = _quantize(values, details)
    np.testing.assert_array_equal(q, np.array([-128, -20, -10, -9, 127], dtype=np.int8))
    np.testing.assert_allclose(_dequantize(q, details), [-59.0, -5.0, 0.0, 0.5, 68.5])
    floats = {"dtype": np.float32, "quantization": (0.0, 0)}
    np.testing.assert_array_equal(_quantize(values, floats), values)


def test_int8_calibration_from_dark_dataset_pairs_keeps_pixel_scale(tmp_path):
    # A tf.data pipeline of (images, labels) pairs whose pixels never exceed 120: the input
    # quantisation must still be the identity on [0, 255], or bright pixels would clip.
    model = small_classifier()
    dark, labels = tinted_images(16, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices((dark * (120 / 255), labels)).batch(4)
    path = export_tflite(model, str(tmp_path / "m.tflite"), SIZE, quantization="int8", representative_images=dataset)
    assert io_details(path)[0]["quantization"] == (1.0, 0)


def test_greyscale_model_with_bare_logits(tmp_path):
    model = keras.Sequential(
        [keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)]
    )
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 1)).astype("float32")
    path = export_tflite(model, str(tmp_path / "grey.tflite"), 16, channels=1)
    logits = model.predict(images, verbose=0).astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(tflite_predict(path, images), expected, atol=1e-4)


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous export")
    with pytest.raises(UserError, match="already exists"):
        export_tflite(model, str(path), 8)
    assert path.read_bytes() == b"previous export"
    export_tflite(model, str(path), 8, overwrite=True)
    assert path.read_bytes()[4:8] == b"TFL3"  # the flatbuffer file identifier
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]  # no staging file left behind


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quantization": "int4"}, "quantization"),
        ({"quantization": "int8"}, "representative_images"),
        ({"quantization": "int8", "representative_images": np.zeros((0, 8, 8, 3))}, "empty"),
        ({"quantization": "int8", "representative_images": np.zeros((2, 9, 9, 3))}, "shape"),
        ({"quantization": "int8", "representative_images": np.full((2, 8, 8, 3), 300.0)}, r"\[0, 255\]"),
    ],
)
def test_bad_requests_fail_before_writing(tmp_path, kwargs, message):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    with pytest.raises(UserError, match=message):
        export_tflite(model, str(tmp_path / "m.tflite"), 8, **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_ghostnet_int8_file_is_under_30_percent_of_float32(tmp_path):
    # Issue 5 "done means": the GhostNet int8 file <= 30% of the float32 file. int8 weights are a
    # quarter of float32; int32 biases and per-channel scales add the rest (measured: ~28%).
    model = GhostNet(num_classes=10, input_shape=(64, 64))
    images = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    float_path = export_tflite(model, str(tmp_path / "f.tflite"), 64)
    int8_path = export_tflite(model, str(tmp_path / "q.tflite"), 64, quantization="int8", representative_images=images)
    float_size, int8_size = os.path.getsize(float_path), os.path.getsize(int8_path)
    print(f"GhostNet-1.0 64px: float32 {float_size / 1e6:.2f} MB, int8 {int8_size / 1e6:.2f} MB")
    # The float file really holds float32 weights: 4 bytes per conv/dense kernel entry at least.
    kernels = sum(int(np.prod(w.shape)) for w in model.weights if w.name in ("kernel", "depthwise_kernel"))
    assert float_size >= 4 * kernels
    assert int8_size <= 0.30 * float_size
