"""Augmentation layers, all safe inside tf.data and identity when ``training=False``."""

from keras_fgvc.augment import presets  # noqa: F401
