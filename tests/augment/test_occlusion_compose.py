"""CoarseDropout / OcclusionMask / OneOf / RandomApply with injected parameters against NumPy."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.augment import (
    CoarseDropout,
    OcclusionMask,
    OneOf,
    RandomApply,
    RandomGamma,
    presets,
)
from keras_fgvc.data.masks import load_mask_bank
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
    bank = load_mask_bank([tmp_path / "a.png", tmp_path / "b.png"], mask_size=8)
    layer = OcclusionMask(mode="masks", mask_bank=bank)
    x = np.full((2, 16, 16, 3), 50.0, "float32")
    y = np.asarray(layer.apply_parameters(tf.constant(x), {"mask_index": tf.constant([0, 1])}))
    expected = x.copy()
    expected[0, 4:12, 0:8] = RED
    expected[1, :, 8:] = RED
    np.testing.assert_allclose(y, expected)
    # The bank is runtime data: the config leaves it out, and rebuilding needs it again.
    config = layer.get_config()
    assert "mask_bank" not in config and "mask_dir" not in config and config["mode"] == "masks"
    clone = OcclusionMask.from_config(config, mask_bank=bank)
    assert clone.get_config() == config
    np.testing.assert_allclose(clone.apply_parameters(tf.constant(x), {"mask_index": tf.constant([0, 1])}), expected)
    with pytest.raises(ValueError, match=r"mask_bank=keras_fgvc\.data\.masks\.load_mask_bank\("):
        OcclusionMask.from_config(config)


@pytest.mark.parametrize("dtype", [bool, np.uint8])
def test_occlusion_paints_exactly_the_bank_pixels(dtype):
    """A bank at the image size is painted pixel for pixel; each image gets the mask it drew."""
    rng = np.random.default_rng(0)
    bank = rng.random((3, 12, 10)) < 0.3
    x = images(4, 12)[:, :, :10]
    layer = OcclusionMask(mode="masks", mask_bank=bank.astype(dtype) * (7 if dtype is np.uint8 else 1), seed=1)
    index = np.array([2, 0, 1, 2])
    y = np.asarray(layer.apply_parameters(tf.constant(x), {"mask_index": tf.constant(index)}))
    expected = np.where(bank[index][..., None], RED, x)
    np.testing.assert_array_equal(y, expected)
    # Called for real: every image is its input with one whole bank mask painted red.
    y = np.asarray(layer(np.concatenate([x] * 8), training=True))
    drawn = [[i for i, m in enumerate(bank) if np.array_equal(np.where(m[..., None], RED, xi), yi)]
             for xi, yi in zip(np.concatenate([x] * 8), y)]
    assert all(len(d) == 1 for d in drawn)
    assert {d[0] for d in drawn} == {0, 1, 2}  # 32 draws reach every mask
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_occlusion_masks_mode_needs_a_bank_and_refuses_the_old_folder_argument():
    with pytest.raises(ValueError, match=r"needs a mask bank: pass mask_bank=keras_fgvc\.data\.masks\.load_mask_bank"):
        OcclusionMask(mode="masks")
    with pytest.raises(ValueError, match=r"no longer reads files: pass mask_bank="):
        OcclusionMask(mode="masks", mask_dir="train_masks")
    for bad, message in ((np.zeros((4, 4), bool), r"\[N, height, width\]"), (np.zeros((0, 4, 4), bool), "N >= 1"),
                         (np.zeros((1, 4, 4), np.float32), "bool or integer")):
        with pytest.raises(ValueError, match=message):
            OcclusionMask(mode="masks", mask_bank=bad)
    rectangle = OcclusionMask(mask_bank=np.ones((1, 4, 4), bool))  # a bank is ignored by mode="rectangle"
    assert rectangle.mask_bank is None and "mask_bank" not in rectangle.get_config()


def test_presets_hand_the_bank_to_masks_steps_only():
    bank = np.zeros((2, 8, 8), bool)
    bank[0, :4] = True
    bank[1, :, 4:] = True
    steps = [{"OcclusionMask": {"mode": "rectangle"}},
             {"OcclusionMask": {"mode": "masks", "rate": 0.5}},
             {"OneOf": {"layers": [{"RandomGamma": {}}, {"OcclusionMask": {"mode": "masks"}}]}},
             {"RandomApply": {"layer": {"OcclusionMask": {"mode": "masks"}}, "rate": 0.3}}]
    stack = presets.build(steps, name="hotel", mask_bank=bank)
    rectangle, masks, one_of, random_apply = stack.layers
    assert stack.name == "hotel" and rectangle.mode == "rectangle" and rectangle.mask_bank is None
    assert masks.rate == 0.5
    for layer in (masks, one_of.layers[1], random_apply.layer):
        np.testing.assert_array_equal(layer.mask_bank, bank)
    assert isinstance(one_of.layers[0], RandomGamma) and random_apply.rate == 0.3
    assert steps[2]["OneOf"]["layers"][1] == {"OcclusionMask": {"mode": "masks"}}  # the steps stay plain data
    y = np.asarray(masks.apply_parameters(tf.constant(images(1, 8)), {"mask_index": tf.constant([1])}))
    np.testing.assert_array_equal(y[0, :, 4:], np.broadcast_to(RED, (8, 4, 3)))
    with pytest.raises(ValueError, match="needs a mask bank"):
        presets.build(steps)
    hotel = presets.build(presets.get("hotel_id_train"), mask_bank=bank)  # no masks step: the bank is unused
    assert hotel.layers[-1].mode == "rectangle" and hotel.layers[-1].mask_bank is None


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
