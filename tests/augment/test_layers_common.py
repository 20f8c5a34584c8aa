"""Every layer: eager, tf.data, training=False identity, config round-trip, mixed precision, randomness."""

import numpy as np
import pytest

from keras_fgvc import augment
from tests.augment.checks import check_augmentation_layer, check_mixed_precision_layer, differs_per_image, images

FACTORIES = {
    "RandAugment": lambda: augment.RandAugment(num_ops=2, magnitude=9),
    "AutoAugment": lambda: augment.AutoAugment(),
    "RandomAffine": lambda: augment.RandomAffine(degrees=25, translate=0.1, scale=(0.9, 1.1), shear=8),
    "ShiftScaleRotate": lambda: augment.ShiftScaleRotate(rate=0.5),
    "RandomGamma": lambda: augment.RandomGamma(),
    "CoarseDropout": lambda: augment.CoarseDropout((1, 4), (0.1, 0.2), (0.1, 0.2), fill_value=(255, 0, 0)),
    "OcclusionMask": lambda: augment.OcclusionMask(),
    "OneOf": lambda: augment.OneOf([{"RandomGamma": {}}, {"RandomContrast": {"factor": 0.2}}], rate=0.8),
    "RandomApply": lambda: augment.RandomApply({"RandomGamma": {}}, rate=0.5),
    "RandomResizedCrop": lambda: augment.RandomResizedCrop(),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_layer_contract(name):
    check_augmentation_layer(FACTORIES[name], images())


def test_resized_crop_contract_with_new_size():
    x = images()
    check_augmentation_layer(lambda: augment.RandomResizedCrop(24, 20), x, output_hw=(24, 20))
    # training=False resizes the whole image (the evaluation path).
    layer = augment.RandomResizedCrop(16, 16)
    flat = np.full((2, 32, 32, 3), 77.0, "float32")
    np.testing.assert_allclose(np.asarray(layer(flat, training=False)), np.full((2, 16, 16, 3), 77.0), atol=1e-4)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_mixed_precision(name):
    check_mixed_precision_layer(FACTORIES[name], images())


@pytest.mark.parametrize("name", ["RandAugment", "AutoAugment", "RandomAffine", "RandomGamma", "CoarseDropout",
                                  "OcclusionMask", "OneOf", "RandomResizedCrop"])
def test_images_get_different_transformations(name):
    """The same image repeated through the batch comes out in several different versions."""
    x = np.repeat(images(1, 32), 16, axis=0)
    y = np.asarray(FACTORIES[name]()(x, training=True))
    distinct = {np.round(image, 2).tobytes() for image in y}
    assert len(distinct) >= 4, f"{name}: only {len(distinct)} distinct outputs for 16 images"


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_rate_bounds(rate):
    x = images(8)
    y = np.asarray(augment.RandomGamma(gamma_limit=(50, 50), rate=rate)(x, training=True))
    assert differs_per_image(y, x).mean() == rate


def test_rate_is_per_image():
    x = np.repeat(images(1, 16), 400, axis=0)
    changed = differs_per_image(np.asarray(augment.RandomGamma((50, 50), rate=0.3)(x, training=True)), x)
    assert 0.22 < changed.mean() < 0.38  # Binomial(400, 0.3): +-3.5 sigma
