"""CoarseDropout / OcclusionMask / OneOf / RandomApply with injected parameters against NumPy."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.augment import CoarseDropout, OcclusionMask, OneOf, RandomApply, RandomGamma
from tests.augment.checks import images

RED = np.array([255.0, 0.0, 0.0], "float32")


def test_coarse_dropout_injected_holes():
    x = images(2, 16)
    layer = CoarseDropout((1, 2), fill_value=(255, 0, 0))
    parameters = {"top": tf.constant([[1, 10], [0, 0]]), "left": tf.constant([[2, 12], [5, 0]]),
                  "hole_height": tf.constant([[3, 4], [2, 0]]), "hole_width": tf.constant([[2, 3], [6, 9]])}
    y = np.asarray(layer.apply_parameters(tf.constant(x), parameters))
    expected = x.copy()
    expected[0, 1:4, 2:4] = RED
    expected[0, 10:14, 12:15] = RED
    expected[1, 0:2, 5:11] = RED  # the second hole of image 1 has zero height: inactive
    np.testing.assert_allclose(y, expected)


@pytest.mark.parametrize("make", [lambda fill: CoarseDropout(fill_value=fill),
                                  lambda fill: OcclusionMask(fill_value=fill)])
def test_fill_colour_outside_the_value_range_is_refused(make):
    """Painting layers skip the final clip, so an out-of-range colour must be refused up front."""
    for bad in (-1.0, 256.0, (255, 0, 300)):
        with pytest.raises(ValueError, match="fill_value"):
            make(bad)
    assert make((255, 0, 0)).fill_value == [255.0, 0.0, 0.0]


def test_coarse_dropout_samples_within_ranges():
    layer = CoarseDropout((2, 5), (0.1, 0.25), (4, 6), seed=0)
    p = {k: np.asarray(v) for k, v in layer.sample_parameters(tf.constant([3000, 40, 40, 3])).items()}
    active = p["hole_height"] > 0
    counts = active.sum(axis=1)
    assert counts.min() == 2 and counts.max() == 5
    assert p["hole_height"][active].min() == 4 and p["hole_height"][active].max() == 10  # 0.1..0.25 of 40
    assert p["hole_width"].min() == 4 and p["hole_width"].max() == 6
    assert np.all(p["top"] + p["hole_height"] <= 40) and np.all(p["left"] + p["hole_width"] <= 40)


def test_occlusion_rectangle_sides_between_quarter_and_half():
    """Hotel-ID: one red rectangle per image, sides in [size/4, size/2], fully inside the image."""
    x = np.full((64, 48, 40, 3), 100.0, "float32")
    y = np.asarray(OcclusionMask(seed=0)(x, training=True))
    red = np.all(y == RED, axis=-1)
    for mask in red:
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert 12 <= height <= 24 and 10 <= width <= 20
        assert mask.sum() == height * width  # one solid rectangle
    heights = red.any(axis=2).sum(axis=1)
    assert len(set(heights)) > 5  # sizes vary per image


def test_occlusion_real_masks_are_scaled_to_the_image(tmp_path):
    canvas = np.zeros((20, 40, 4), np.uint8)
    canvas[5:15, 0:20] = (255, 0, 0, 255)  # opaque red left-centre block on a transparent PNG
    Image.fromarray(canvas, "RGBA").save(tmp_path / "a.png")
    opaque = np.zeros((10, 10, 3), np.uint8)
    opaque[:, 5:] = (250, 10, 10)  # an opaque PNG: red right half on black
    Image.fromarray(opaque).save(tmp_path / "b.png")
    layer = OcclusionMask(mode="masks", mask_dir=str(tmp_path), mask_size=8)
    x = np.full((2, 16, 16, 3), 50.0, "float32")
    y = np.asarray(layer.apply_parameters(tf.constant(x), {"mask_index": tf.constant([0, 1])}))
    expected = x.copy()
    expected[0, 4:12, 0:8] = RED
    expected[1, :, 8:] = RED
    np.testing.assert_allclose(y, expected)
    assert OcclusionMask.from_config(layer.get_config()).get_config() == layer.get_config()


def fixed_gamma(g):
    return RandomGamma(gamma_limit=(g * 100, g * 100))


def test_one_of_injected_choice():
    x = images(3)
    layer = OneOf([fixed_gamma(0.5), fixed_gamma(2.0)])
    y = np.asarray(layer.apply_parameters(tf.constant(x), {"choice": tf.constant([1, 2, 0])}))
    np.testing.assert_allclose(y[0], 255 * (x[0] / 255) ** 2.0, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(y[1], x[1])  # group 2 = not applied
    np.testing.assert_allclose(y[2], 255 * (x[2] / 255) ** 0.5, rtol=1e-5, atol=1e-3)


def test_one_of_choice_frequencies_follow_weights_and_rate():
    layer = OneOf([fixed_gamma(0.5), fixed_gamma(2.0)], choice_weights=[3, 1], rate=0.5, seed=0)
    choice = np.asarray(layer.sample_parameters(tf.constant([8000, 4, 4, 3]))["choice"])
    freq = np.bincount(choice, minlength=3) / len(choice)
    np.testing.assert_allclose(freq, [0.375, 0.125, 0.5], atol=0.03)


def test_random_apply_injected_mask():
    x = images(3)
    layer = RandomApply(fixed_gamma(2.0), rate=0.5)
    y = np.asarray(layer.apply_parameters(tf.constant(x), {"applied": tf.constant([True, False, True])}))
    np.testing.assert_allclose(y[[0, 2]], 255 * (x[[0, 2]] / 255) ** 2.0, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(y[1], x[1])
    clone = RandomApply.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and isinstance(clone.layer, RandomGamma)
