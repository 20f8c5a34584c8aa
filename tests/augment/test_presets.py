"""Presets are data that build working stacks in the seed recipes' order; the preview grid plot."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.augment import presets
from keras_fgvc.tracking.plots_augment import augmentation_grid
from tests.augment.checks import images


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_builds_and_runs_in_tf_data(name):
    image_steps, _ = presets.split_label_mixing(presets.get(name))
    # A preset with real-mask occlusion needs a bank: one 8x8 mask, its left half occluded.
    bank = np.zeros((1, 8, 8), bool) if presets.needs_mask_bank(image_steps) else None
    if bank is not None:
        bank[:, :, :4] = True
    stack = presets.build(image_steps, mask_bank=bank)
    x = images(4, 32)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2).map(lambda a: stack(a, training=True))
    for batch in ds:
        assert batch.shape == (2, 32, 32, 3)
        assert float(tf.reduce_min(batch)) >= 0.0 and float(tf.reduce_max(batch)) <= 255.0
    np.testing.assert_array_equal(np.asarray(stack(x, training=False)), x)


def test_hotel_id_train_follows_table_1():
    """Seed 000 Table 1: RRC 100%, flip 50%, OneOf(brightness, contrast, gamma) 50%, SSR 30%,
    CoarseDropout 50% (red squares), CoarseDropout 100% (one large red rectangle, size/4..size/2)."""
    stack = presets.build(presets.get("hotel_id_train"))
    names = [type(layer).__name__ for layer in stack.layers]
    # The flip (p 0.5) after the crop is folded into RandomResizedCrop's box.
    assert names == ["RandomResizedCrop", "OneOf", "ShiftScaleRotate", "CoarseDropout", "OcclusionMask"]
    crop, one_of, ssr, dropout, mask = stack.layers
    assert crop.horizontal_flip == 0.5 and crop.scale == (0.08, 1.0)
    assert [type(l).__name__ for l in one_of.layers] == ["RandomBrightness", "RandomContrast", "RandomGamma"]
    assert (one_of.rate, ssr.rate, dropout.rate, mask.rate) == (0.5, 0.3, 0.5, 1.0)
    assert dropout.fill_value == [255, 0, 0] and mask.size_range == (0.25, 0.5)
    assert [type(l).__name__ for l in presets.build(presets.get("hotel_id_val")).layers] == ["OcclusionMask"]


def test_hotel_id_train_masks_draws_the_large_occlusion_from_the_rectangle_or_a_real_mask():
    steps = presets.get("hotel_id_train_masks")
    assert steps[:-1] == presets.get("hotel_id_train")[:-1] and presets.needs_mask_bank(steps)
    assert not presets.needs_mask_bank(presets.get("hotel_id_train"))
    bank = np.zeros((1, 8, 8), bool)
    bank[:, :, :4] = True  # the left half of the image
    one_of = presets.build(steps[-1:], mask_bank=bank).layers[0]
    rectangle, real = one_of.layers
    assert (rectangle.mode, real.mode, one_of.rate) == ("rectangle", "masks", 1.0)
    grey = np.full((1, 16, 16, 3), 128.0, np.float32)
    occluded = np.asarray(real(grey, training=True))[0]
    np.testing.assert_array_equal(occluded[:, :8], np.broadcast_to([255.0, 0.0, 0.0], (16, 8, 3)))
    np.testing.assert_array_equal(occluded[:, 8:], grey[0, :, 8:])
    with pytest.raises(ValueError, match="mask bank"):
        presets.build(steps)  # masks mode without a bank: says how to build one


def test_vipriors_keeps_cutmix_for_the_labelled_batch_stage():
    image_steps, mixing_steps = presets.split_label_mixing(presets.get("vipriors"))
    assert [next(iter(s)) for s in image_steps] == ["RandomResizedCrop", "AutoAugment"]
    assert image_steps[0]["RandomResizedCrop"]["horizontal_flip"] == 0.5
    assert mixing_steps == [{"BatchCutMix": {"alpha": 1.0, "rate": 0.5, "label_mode": "one_hot"}}]


def test_cars_recipe_parameters():
    steps = dict(next(iter(s.items())) for s in presets.get("cars"))
    assert steps["RandomAffine"] == {"degrees": 25.0, "translate": 0.1, "scale": [0.9, 1.1], "shear": 8.0}
    jitter = steps["RandomColorJitter"]
    lo, hi = jitter["saturation_factor"]
    # Keras' saturation multiplier is s / (1 - s): torchvision's 0.2 means multipliers 0.8..1.2.
    assert np.isclose(lo / (1 - lo), 0.8) and np.isclose(hi / (1 - hi), 1.2)


def test_a_config_can_edit_one_step():
    steps = presets.get("fivek")
    steps[1]["RandomZoom"]["height_factor"] = 0.3
    assert presets.build(steps).layers[1].get_config()["height_factor"] == 0.3
    assert presets.get("fivek")[1]["RandomZoom"]["height_factor"] == 0.1  # the table itself is untouched


def test_augmentation_grid_writes_png(tmp_path):
    grid = np.zeros((10, 16, 16, 3), np.uint8)
    grid[:, :, :, 0] = 255
    path = augmentation_grid(grid, tmp_path / "sub" / "grid.png", columns=4)
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert abs(width / height - 4 / 3) < 0.05  # 4 columns x 3 rows of square cells
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60)
    assert 0.2 < red.mean() < 0.9
    with pytest.raises(ValueError, match="uint8"):
        augmentation_grid(grid.astype("float32"), tmp_path / "bad.png")
