import keras
import numpy as np
import pytest

from keras_fgvc.evaluation import TTA_PRESETS, apply_view, make_views, predict_tta


def _image():
    # one 4 x 6 single-channel image with distinct values 0..23
    return np.arange(24, dtype=np.float32).reshape(1, 4, 6, 1)


def test_presets_follow_vipriors_recipe():
    # seed 002: two crops x four scales (224/320/380/448) x {plain, flipped}
    views = TTA_PRESETS["vipriors"]
    assert len(views) == 16 and len(TTA_PRESETS["vipriors_center"]) == 8
    assert sorted({v["size"] for v in views}) == [224, 320, 380, 448]
    assert {v["crop"] for v in views} == {"center", "random_area"}
    assert sum(v["flip"] for v in views) == 8
    center = [v for v in views if v["crop"] == "center"][0]
    assert (center["shorter"], center["crop_size"]) == (256, 224)


def test_center_crop_exact_values():
    # shorter side 4 -> 2 halves the image: bilinear (half-pixel centres) gives 2x2 block means
    out = apply_view(_image(), {"crop": "center", "shorter": 2, "crop_size": 2, "size": 2})
    blocks = _image()[0, :, :, 0].reshape(2, 2, 3, 2).mean(axis=(1, 3))  # [[3.5, 5.5, 7.5], [15.5, ...]]
    np.testing.assert_allclose(out.numpy()[0, :, :, 0], blocks[:, 0:2], atol=1e-5)  # central 2 of 3 columns


def test_flip_and_plain_resize_identity():
    image = _image()[:, :4, :4]
    same = apply_view(image, {"crop": "none", "size": 4})
    np.testing.assert_array_equal(same.numpy(), image)
    flipped = apply_view(image, {"crop": "none", "size": 4, "flip": True})
    np.testing.assert_array_equal(flipped.numpy(), image[:, :, ::-1])


def test_random_area_crop_shapes_and_full_area_is_identity():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 10, 10, 3)).astype("float32")
    full = apply_view(images, {"crop": "random_area", "area": [1.0, 1.0], "size": 10})
    np.testing.assert_allclose(full.numpy(), images, atol=1e-6)
    view = {"crop": "random_area", "area": [0.8, 1.0], "size": 7, "seed": 3}
    a, b = apply_view(images, view), apply_view(images, view)
    assert a.shape == (3, 7, 7, 3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # seeded: repeatable


def test_multiscale_view_shapes():
    views = make_views(sizes=(8, 12), flips=(False, True))
    shapes = [tuple(apply_view(np.zeros((2, 5, 9, 3), np.uint8), v).shape) for v in views]
    assert shapes == [(2, 8, 8, 3), (2, 8, 8, 3), (2, 12, 12, 3), (2, 12, 12, 3)]


def test_predict_tta_means_probabilities_and_renormalises_embeddings():
    image = np.zeros((1, 2, 2, 1), np.float32)
    image[0, 0, 0, 0] = 1.0  # flipping moves the bright pixel: the two views differ

    def probs(x):  # mass on class 0 is the bright pixel's column-0 share
        left = np.asarray(x)[:, :, 0, 0].sum(axis=1)
        return np.stack([left, 1 - left], axis=1)

    views = make_views(sizes=(2,), flips=(False, True))
    np.testing.assert_allclose(predict_tta(probs, image, views), [[0.5, 0.5]])

    def embed(x):
        left = np.asarray(x)[:, :, 0, 0].sum(axis=1)
        return np.stack([3 * left, 3 * (1 - left)], axis=1)  # norm 3: [3, 0] then [0, 3]

    np.testing.assert_allclose(predict_tta(embed, image, views, reduce="normalized_mean"), [[2**-0.5, 2**-0.5]])


def test_predict_tta_with_keras_model_dict_output():
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, {"probabilities": keras.layers.Softmax()(keras.layers.Dense(4)(pooled))})
    images = np.random.default_rng(1).uniform(size=(2, 6, 6, 3)).astype("float32")
    views = make_views(sizes=(6,), flips=(False, True))
    got = predict_tta(model, images, views, output_key="probabilities")
    # global average pooling is flip-invariant and a same-size resize is the identity
    want = keras.ops.convert_to_numpy(model(images)["probabilities"])
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="reduce"):
        predict_tta(model, images, views, reduce="max")


def test_vipriors_views_scaled_to_a_64_px_model():
    from keras_fgvc.evaluation.tta import scaled_views, source_size

    views = scaled_views("vipriors", 64)
    # 224 / 320 / 380 / 448 x 64 / 224, the 256 -> 224 centre crop likewise (73 -> 64)
    assert sorted({v["size"] for v in views}) == [64, 91, 109, 128]
    assert len(views) == 16 and sum(v["flip"] for v in views) == 8
    center = [v for v in views if v["crop"] == "center"]
    assert {(v["shorter"], v["crop_size"]) for v in center} == {(73, 64)}
    assert {tuple(v["area"]) for v in views if v["crop"] == "random_area"} == {(0.8, 1.0)}
    assert source_size(views) == 128
    assert scaled_views("vipriors", 224) == TTA_PRESETS["vipriors"]  # the report's own size: unchanged


def test_predict_tta_batches_is_the_mean_of_each_views_softmax_from_the_model_of_its_size():
    from keras_fgvc.evaluation.tta import predict_tta_batches

    def model_at(size, weights=None):
        inputs = keras.Input((size, size, 3))
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, {"logits": keras.layers.Dense(3, name="dense")(x)})
        if weights is not None:
            model.set_weights(weights)
        return model

    small = model_at(8)
    models = {8: small, 12: model_at(12, small.get_weights())}
    views = make_views([{"crop": "center", "shorter": 12, "crop_size": 10}, {"crop": "none"}], sizes=(8, 12),
                       flips=(False, True))
    rng = np.random.default_rng(1)
    batches = [rng.uniform(0, 255, size=(n, 12, 12, 3)).astype("float32") for n in (3, 2)]
    got = predict_tta_batches(models, batches, views)
    expected = []
    for batch in batches:
        per_view = [keras.ops.convert_to_numpy(keras.ops.softmax(models[v["size"]](apply_view(batch, v))["logits"]))
                    for v in views]
        expected.append(np.mean(per_view, axis=0))
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-6)
    assert got.shape == (5, 3)


def test_flip_tta_probabilities_are_the_mean_over_the_image_and_its_mirror(tmp_path):
    """predict_probabilities(flip_tta=True) against a NumPy reference: softmax of a linear model on
    the pixels and on the mirrored pixels, averaged. The images are asymmetric, so the two views differ."""
    import keras
    import pandas as pd
    from PIL import Image

    from keras_fgvc.evaluation.predict import predict_probabilities

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 6, 6, 3)).astype("uint8")
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    inputs = keras.Input((6, 6, 3))
    dense = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=1))
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    kernel, bias = (np.asarray(w, "float64") for w in dense.get_weights())

    def softmax(images):
        logits = images.reshape(len(images), -1).astype("float64") @ kernel + bias
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    table = pd.DataFrame({"path": paths})
    plain = predict_probabilities(model, table, 6, batch_size=2, cache=False)
    both = predict_probabilities(model, table, 6, batch_size=2, cache=False, flip_tta=True)
    np.testing.assert_allclose(plain, softmax(pixels), atol=1e-5)
    expected = (softmax(pixels) + softmax(pixels[:, :, ::-1])) / 2
    np.testing.assert_allclose(both, expected, atol=1e-5)
    assert np.abs(both - plain).max() > 1e-2  # the mirror view changed the answer
