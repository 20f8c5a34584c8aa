"""Augmentation layers, all safe inside tf.data and identity when ``training=False``.

Images are NHWC in [0, 255]; normalisation happens later, inside the model. Presets (lists of
``{layer: kwargs}`` steps) live in ``presets``; a step's layer name resolves here first, then in
``keras.layers``.
"""

from keras_fgvc.augment.base import BatchAugmentation
from keras_fgvc.augment.colour import RandomGamma
from keras_fgvc.augment.compose import OneOf, RandomApply
from keras_fgvc.augment.geometric import RandomAffine, RandomResizedCrop, ShiftScaleRotate
from keras_fgvc.augment.mixing import BatchCutMix, BatchMixUp
from keras_fgvc.augment.occlusion import CoarseDropout, OcclusionMask
from keras_fgvc.augment.policies import AutoAugment, RandAugment
from keras_fgvc.augment import presets  # noqa: F401  (after the layers: presets resolve names here)

__all__ = [
    "AutoAugment", "BatchAugmentation", "BatchCutMix", "BatchMixUp", "CoarseDropout", "OcclusionMask", "OneOf",
    "RandAugment", "RandomAffine", "RandomApply", "RandomGamma", "RandomResizedCrop", "ShiftScaleRotate", "presets",
]
