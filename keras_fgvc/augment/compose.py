"""Composition with probabilities: ``OneOf`` and ``RandomApply`` (albumentations ``OneOf`` / torchvision ``RandomApply``).

Each image draws its own choice and the wrapped layers run only on the images that chose them.
Wrapped layers can be given as layer objects, as preset steps (``{"RandomGamma": {...}}``) or as
serialized Keras objects, so presets stay plain data.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.augment.base import BatchAugmentation, apply_by_group, clip_to_range


def as_layer(spec):
    """A layer from a layer, a serialized layer (``{"class_name": ...}``) or a preset step ``{name: kwargs}``."""
    if isinstance(spec, keras.layers.Layer):
        return spec
    if isinstance(spec, dict) and "class_name" in spec:
        return keras.saving.deserialize_keras_object(spec)
    if isinstance(spec, dict) and len(spec) == 1:
        from keras_fgvc.augment.presets import resolve_layer

        (name, kwargs), = spec.items()
        return resolve_layer(name)(**dict(kwargs or {}))
    raise ValueError(f"cannot build a layer from {spec!r}")


@keras.saving.register_keras_serializable(package="keras_fgvc")
class OneOf(BatchAugmentation):
    """With probability ``rate``, apply exactly one of ``layers`` (drawn per image with ``weights``).

    Args:
        layers: list of layers / preset steps; each must keep the image shape.
        choice_weights: relative choice weights (uniform when ``None``).
        rate: probability that an image gets any of them.
        seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = OneOf([{"RandomBrightness": {"factor": 0.2}}, {"RandomContrast": {"factor": 0.2}},
        ...                {"RandomGamma": {}}], rate=0.5)   # Hotel-ID step 3
    """

    _rate_in_parameters = True
    _clips_output = False  # the wrapped layers' outputs are clipped per subset; kept images need none

    def __init__(self, layers, choice_weights=None, rate=1.0, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.layers = [as_layer(spec) for spec in layers]
        if not self.layers:
            raise ValueError("OneOf needs at least one layer")
        weights = np.ones(len(self.layers)) if choice_weights is None else np.asarray(choice_weights, np.float64)
        if weights.shape != (len(self.layers),) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be {len(self.layers)} non-negative numbers, got {weights!r}")
        self.choice_weights = [float(w) for w in weights]

    def build(self, input_shape):
        for layer in self.layers:
            layer.build(input_shape)

    def sample_parameters(self, shape):
        batch = shape[:1]
        bounds = np.cumsum(self.choice_weights)[:-1] / sum(self.choice_weights)
        choice = tf.reduce_sum(tf.cast(self.uniform(batch)[:, None] >= tf.constant(bounds, tf.float32)[None, :],
                                       tf.int32), axis=1)
        applied = self.uniform(batch) < self.rate
        # Group len(layers) is "left unchanged".
        return {"choice": tf.where(applied, choice, len(self.layers))}

    def apply_parameters(self, images, parameters):
        functions = [lambda part, where, layer=layer: clip_to_range(layer(part, training=True))
                     for layer in self.layers] + [None]
        return apply_by_group(images, parameters["choice"], len(self.layers) + 1, functions)

    def get_config(self):
        return {**super().get_config(), "layers": [keras.saving.serialize_keras_object(l) for l in self.layers],
                "choice_weights": self.choice_weights}


@keras.saving.register_keras_serializable(package="keras_fgvc")
class RandomApply(BatchAugmentation):
    """Apply ``layer`` to each image with probability ``rate`` (only those images are computed).

    Args:
        layer: a layer / preset step that keeps the image shape.
        rate: probability per image.
        seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = RandomApply({"RandomErasing": {"scale": (0.02, 0.25)}}, rate=0.5)
    """

    _rate_in_parameters = True
    _clips_output = False  # the wrapped layer's output is clipped on its subset only

    def __init__(self, layer, rate=0.5, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.layer = as_layer(layer)

    def build(self, input_shape):
        self.layer.build(input_shape)

    def sample_parameters(self, shape):
        return {"applied": self.uniform(shape[:1]) < self.rate}

    def apply_parameters(self, images, parameters):
        groups = tf.cast(tf.logical_not(parameters["applied"]), tf.int32)  # 0: apply, 1: keep
        return apply_by_group(images, groups, 2,
                              [lambda part, where: clip_to_range(self.layer(part, training=True)), None])

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}
