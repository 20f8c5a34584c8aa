"""Label-mixing CutMix/MixUp: injected parameters against NumPy, both label contracts, per-batch rate."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.augment import BatchCutMix, BatchMixUp
from tests.augment.checks import images


def batch(n=4, classes=5):
    labels = np.arange(n) % classes
    return {"images": images(n, 8), "labels": np.eye(classes, dtype="float32")[labels]}, labels


def test_cutmix_injected_box_mixes_images_and_one_hot_labels():
    data, _ = batch()
    permutation = np.array([1, 0, 3, 2])
    mask = np.zeros((4, 8, 8), bool)
    mask[:, 2:6, 0:4] = True  # 16 of 64 pixels from the partner: lam = 0.75
    parameters = {"permutation": tf.constant(permutation), "mask": tf.constant(mask),
                  "lam": tf.fill([4], 0.75), "applied": tf.constant(True)}
    out = BatchCutMix().apply_parameters(data, parameters)
    expected = np.where(mask[..., None], data["images"][permutation], data["images"])
    np.testing.assert_allclose(np.asarray(out["images"]), expected)
    np.testing.assert_allclose(np.asarray(out["labels"]), 0.75 * data["labels"] + 0.25 * data["labels"][permutation])


def test_pair_mode_returns_integer_labels_and_weight():
    data, ids = batch()
    data = {"images": data["images"], "labels": ids, "sample_weight": np.ones(4)}
    permutation = np.array([3, 2, 1, 0])
    parameters = {"permutation": tf.constant(permutation), "lam": tf.constant([0.9, 0.8, 0.7, 0.6]),
                  "applied": tf.constant(True)}
    out = BatchMixUp(label_mode="pair").apply_parameters(data, parameters)
    assert set(out) == {"images", "labels_a", "labels_b", "lam", "sample_weight"}
    np.testing.assert_array_equal(np.asarray(out["labels_a"]), ids)
    np.testing.assert_array_equal(np.asarray(out["labels_b"]), ids[permutation])
    lam = np.array([0.9, 0.8, 0.7, 0.6])[:, None, None, None]
    np.testing.assert_allclose(np.asarray(out["images"]),
                               lam * data["images"] + (1 - lam) * data["images"][permutation], rtol=1e-5, atol=1e-3)


def test_sampled_cutmix_weight_equals_kept_area():
    data, _ = batch(8)
    layer = BatchCutMix(rate=1.0, seed=0)
    parameters = layer.sample_parameters(tf.constant(data["images"]))
    kept = 1.0 - np.asarray(parameters["mask"], float).reshape(8, -1).mean(axis=1)
    np.testing.assert_allclose(np.asarray(parameters["lam"]), kept, atol=1e-6)
    out = layer(data)
    np.testing.assert_allclose(np.asarray(out["labels"]).sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("layer_class", [BatchCutMix, BatchMixUp])
def test_rate_is_per_batch(layer_class):
    data, ids = batch(8)
    layer = layer_class(rate=0.5, label_mode="pair", seed=0)
    mixed = []
    for _ in range(40):
        out = layer({"images": data["images"], "labels": ids})
        changed = np.abs(np.asarray(out["images"]) - data["images"]).max() > 0
        lam = np.asarray(out["lam"])
        assert changed or (np.all(lam == 1.0) and np.array_equal(np.asarray(out["labels_b"]), ids))
        mixed.append(changed)
    assert 8 <= sum(mixed) <= 32  # Binomial(40, 0.5)
    never = layer_class(rate=0.0)(batch()[0])
    np.testing.assert_array_equal(np.asarray(never["images"]), batch()[0]["images"])


def test_training_false_identity_tf_data_and_config():
    data, _ = batch()
    for layer in (BatchCutMix(), BatchMixUp(label_mode="pair")):
        out = layer(data, training=False)
        np.testing.assert_array_equal(np.asarray(out["images"]), data["images"])
        assert layer.__class__.from_config(layer.get_config()).get_config() == layer.get_config()
    cutmix = BatchCutMix(rate=1.0, seed=1)
    ds = tf.data.Dataset.from_tensor_slices(data).batch(2).map(lambda d: cutmix(d))
    for out in ds:
        assert out["images"].shape == (2, 8, 8, 3)
        np.testing.assert_allclose(out["labels"].numpy().sum(axis=1), 1.0, atol=1e-6)


def test_bare_images_are_rejected():
    with pytest.raises(TypeError, match="labels"):
        BatchCutMix()(images(2, 8))


def test_mixed_precision_images():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        data, _ = batch()
        out = BatchMixUp(rate=1.0)({"images": data["images"].astype("float16"), "labels": data["labels"]})
        assert out["images"].dtype == tf.float16 and out["labels"].dtype == tf.float32
        assert np.all(np.isfinite(np.asarray(out["images"], "float32")))
    finally:
        keras.config.set_dtype_policy("float32")
