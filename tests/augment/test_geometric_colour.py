"""Exact geometry and colour checks with injected parameters against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.augment import RandomAffine, RandomGamma, RandomResizedCrop, ShiftScaleRotate
from tests.augment.checks import images


def affine_parameters(n, angle=0.0, shift_x=0.0, shift_y=0.0, scale=1.0, shear=0.0):
    return {k: tf.fill([n], float(v)) for k, v in
            dict(angle=angle, shift_x=shift_x, shift_y=shift_y, scale=scale, shear=shear).items()}


def test_affine_quarter_turn_is_rot90():
    x = images(2, 9)
    layer = RandomAffine(interpolation="nearest")
    y = np.asarray(layer.apply_parameters(tf.constant(x), affine_parameters(2, angle=90.0)))
    np.testing.assert_allclose(y, np.rot90(x, k=1, axes=(1, 2)), atol=1e-3)


def test_affine_integer_shift_with_constant_fill():
    x = images(1, 10)
    layer = RandomAffine(fill_value=7.0, interpolation="nearest")
    y = np.asarray(layer.apply_parameters(tf.constant(x), affine_parameters(1, shift_x=0.2, shift_y=-0.1)))
    expected = np.full_like(x, 7.0)
    expected[:, :9, 2:] = x[:, 1:, :8]  # 2 px right, 1 px up
    np.testing.assert_allclose(y, expected)


def test_affine_scale_two_zooms_about_the_centre():
    """x_in = (x_out - c) / 2 + c: with bilinear sampling on a linear ramp the result is exact."""
    ramp = np.tile(np.arange(9, dtype="float32")[None, :, None], (9, 1, 3))[None] * 10.0
    y = np.asarray(RandomAffine().apply_parameters(tf.constant(ramp), affine_parameters(1, scale=2.0)))
    expected_columns = (np.arange(9) - 4.0) / 2.0 + 4.0
    np.testing.assert_allclose(y[0, 4, :, 0], expected_columns * 10.0, atol=1e-3)


def test_affine_shear_moves_rows_proportionally():
    """x-shear by angle a: x_in = x_out - tan(a) * (y_out - c_y)."""
    ramp = np.tile(np.arange(11, dtype="float32")[None, :, None], (11, 1, 1))[None] * 10.0
    y = np.asarray(RandomAffine().apply_parameters(tf.constant(ramp), affine_parameters(1, shear=45.0)))
    for row in (3, 5, 7):
        expected = (np.arange(11) - (row - 5.0)) * 10.0
        inside = (expected >= 0) & (expected <= 100)
        np.testing.assert_allclose(y[0, row, inside, 0], expected[inside], atol=1e-3)


def test_shift_scale_rotate_maps_to_affine_ranges():
    layer = ShiftScaleRotate(shift_limit=0.1, scale_limit=0.2, rotate_limit=30, seed=0)
    p = {k: np.asarray(v) for k, v in layer.sample_parameters(tf.constant([3000, 8, 8, 3])).items()}
    assert -30 <= p["angle"].min() < -25 and 25 < p["angle"].max() <= 30
    assert 0.8 <= p["scale"].min() < 0.82 and 1.18 < p["scale"].max() <= 1.2
    assert np.abs(p["shift_x"]).max() <= 0.1 and np.all(p["shear"] == 0)
    assert ShiftScaleRotate.from_config(layer.get_config()).get_config() == layer.get_config()


def test_resized_crop_injected_boxes_are_exact_slices():
    x = images(2, 12)
    layer = RandomResizedCrop(5, 4)
    parameters = {"top": tf.constant([0, 3]), "left": tf.constant([2, 7]), "crop_height": tf.constant([5, 5]),
                  "crop_width": tf.constant([4, 4])}
    y = np.asarray(layer.apply_parameters(tf.constant(x), parameters))
    np.testing.assert_allclose(y[0], x[0, 0:5, 2:6], atol=1e-4)
    np.testing.assert_allclose(y[1], x[1, 3:8, 7:11], atol=1e-4)


def test_resized_crop_flip_mirrors_the_crop():
    """A flipped box gives the crop mirrored left-right, exactly what a RandomFlip after the crop gives."""
    x = images(2, 12)
    layer = RandomResizedCrop(5, 4, horizontal_flip=0.5)
    parameters = {"top": tf.constant([0, 3]), "left": tf.constant([2, 7]), "crop_height": tf.constant([5, 5]),
                  "crop_width": tf.constant([4, 4]), "flip": tf.constant([True, False])}
    y = np.asarray(layer.apply_parameters(tf.constant(x), parameters))
    np.testing.assert_allclose(y[0], x[0, 0:5, 2:6][:, ::-1], atol=1e-4)
    np.testing.assert_allclose(y[1], x[1, 3:8, 7:11], atol=1e-4)


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_resized_crop_flips_with_its_probability(probability):
    """Whole-image crops (scale 1, ratio 1) of an asymmetric image: mirrored exactly at the given rate."""
    x = np.repeat(images(1, 16), 400, axis=0)
    y = np.asarray(RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), horizontal_flip=probability,
                                     seed=1)(x, training=True))
    kept = np.all(np.abs(y - x) < 1e-3, axis=(1, 2, 3))
    mirrored = np.all(np.abs(y - x[:, :, ::-1]) < 1e-3, axis=(1, 2, 3))
    assert np.all(kept ^ mirrored)
    assert abs(mirrored.mean() - probability) < 0.07
    with pytest.raises(ValueError, match="horizontal_flip"):
        RandomResizedCrop(horizontal_flip=1.5)


def test_resized_crop_rate_keeps_the_other_images_whole():
    """rate = albumentations' p: about that share of images is cropped (and flipped); at the input size
    the others come out exactly unchanged, at a new size they are the whole image resized (corner-aligned)."""
    x = np.repeat(images(1, 16), 400, axis=0)
    layer = RandomResizedCrop(scale=(0.2, 0.5), horizontal_flip=0.5, rate=0.3, seed=2)
    y = np.asarray(layer(x, training=True))
    kept = np.all(y == x, axis=(1, 2, 3))
    assert 0.62 < kept.mean() < 0.78  # Binomial(400, 0.7): +-3.5 sigma; a crop of <= 50% area never equals x
    assert RandomResizedCrop.from_config(layer.get_config()).rate == 0.3

    resized = RandomResizedCrop(8, 8, scale=(0.2, 0.5), rate=0.0, seed=2)(x[:4], training=True)
    whole = tf.image.crop_and_resize(x[:4], [[0.0, 0.0, 1.0, 1.0]] * 4, tf.range(4), (8, 8))
    np.testing.assert_allclose(np.asarray(resized), np.asarray(whole), atol=1e-3)
    with pytest.raises(ValueError, match="rate"):
        RandomResizedCrop(rate=1.5)


def test_resized_crop_samples_area_and_ratio_in_range():
    layer = RandomResizedCrop(scale=(0.2, 0.6), ratio=(0.5, 2.0), seed=0)
    p = {k: np.asarray(v, float) for k, v in layer.sample_parameters(tf.constant([2000, 100, 100, 3])).items()}
    area = p["crop_height"] * p["crop_width"] / 1e4
    ratio = p["crop_width"] / p["crop_height"]
    assert 0.19 < area.min() and area.max() < 0.62 and 0.45 < ratio.min() and ratio.max() < 2.1
    assert np.all(p["top"] + p["crop_height"] <= 100) and np.all(p["left"] + p["crop_width"] <= 100)
    assert np.all(p["top"] >= 0) and np.all(p["left"] >= 0)


def test_resized_crop_falls_back_to_centre_crop():
    """No 10%-area crop of a 100x4 strip has ratio in [0.9, 1.1]: torchvision's centre-crop fallback."""
    layer = RandomResizedCrop(scale=(0.1, 0.1), ratio=(0.9, 1.1), seed=0)
    p = {k: np.asarray(v) for k, v in layer.sample_parameters(tf.constant([5, 100, 4, 3])).items()}
    np.testing.assert_array_equal(p["crop_width"], 4)
    np.testing.assert_array_equal(p["crop_height"], round(4 / 0.9))
    np.testing.assert_array_equal(p["top"], (100 - round(4 / 0.9)) // 2)


def test_gamma_formula():
    x = images(3)
    gamma = np.array([0.8, 1.0, 1.2], "float32")
    y = np.asarray(RandomGamma().apply_parameters(tf.constant(x), {"gamma": tf.constant(gamma)}))
    np.testing.assert_allclose(y, 255.0 * (x / 255.0) ** gamma[:, None, None, None], rtol=1e-5, atol=1e-3)
    sampled = np.asarray(RandomGamma((80, 120), seed=0).sample_parameters(tf.constant([1000, 4, 4, 3]))["gamma"])
    assert 0.8 <= sampled.min() < 0.82 and 1.18 < sampled.max() <= 1.2
