"""Colour augmentations missing from Keras core (brightness, contrast, hue, saturation and jitter are core)."""

import keras
import tensorflow as tf

from keras_fgvc.augment.base import BatchAugmentation


@keras.saving.register_keras_serializable(package="keras_fgvc")
class RandomGamma(BatchAugmentation):
    """albumentations ``RandomGamma``: ``255 * (x / 255) ** (g / 100)`` with g drawn from ``gamma_limit``.

    Args:
        gamma_limit: range of g (100 is the identity; albumentations' default is (80, 120)).
        rate, seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = RandomGamma(gamma_limit=(80, 120))
    """

    def __init__(self, gamma_limit=(80.0, 120.0), rate=1.0, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        low, high = (float(g) for g in gamma_limit)
        if not 0 < low <= high:
            raise ValueError(f"gamma_limit must be an increasing positive pair, got {gamma_limit!r}")
        self.gamma_limit = (low, high)

    def sample_parameters(self, shape):
        return {"gamma": self.uniform(shape[:1], *self.gamma_limit) / 100.0}

    def apply_parameters(self, images, parameters):
        gamma = tf.reshape(parameters["gamma"], [-1, 1, 1, 1])
        # x ** g as exp(g * log x): Eigen vectorises exp and log but not pow, ~5x faster here;
        # log(0) = -inf maps black to exp(-inf) = 0 as pow does.
        return 255.0 * tf.exp(gamma * tf.math.log(tf.clip_by_value(images, 0.0, 255.0) / 255.0))

    def get_config(self):
        return {**super().get_config(), "gamma_limit": list(self.gamma_limit)}
