"""Augmentation layers written in TensorFlow ops, usable under every Keras backend in tf.data.

tf.data is the input pipeline under both backends (DESIGN.md), and our augmentation layers are
TensorFlow ops, so under JAX they run there (``augment.runs_in=data``). Two things of Keras'
``Layer`` would get in the way under a backend other than TensorFlow: ``__call__`` converts the
inputs, tf.data's symbolic ``tf.Tensor``s, into that backend's arrays (which fails), and
``keras.random`` draws from that backend's random state, which a TensorFlow graph cannot use.
``TensorFlowOpsLayer`` keeps both on TensorFlow, as Keras core's ``DataLayer`` does for its own
preprocessing layers (not public in Keras 3.15, hence not subclassed here). Under the TensorFlow
backend nothing changes: the layer is an ordinary Keras layer, its random state a Keras
``SeedGenerator`` (saved with the model, restored on resume).
"""

import random

import keras
import tensorflow as tf


def tensorflow_backend() -> bool:
    return keras.backend.backend() == "tensorflow"


class TensorFlowOpsLayer(keras.layers.Layer):
    """A layer whose ``call`` uses TensorFlow ops, with a seeded random stream under any backend.

    Args:
        seed: optional int, makes the random stream reproducible.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Python's ``random`` is what ``keras.utils.set_random_seed`` seeds, so an unseeded layer is
        # still reproducible under a global seed, as Keras' own SeedGenerator is.
        self._tf_generator = None if tensorflow_backend() else tf.random.Generator.from_seed(
            seed if seed is not None else random.randint(1, 2**31 - 1))

    def __call__(self, inputs, *args, **kwargs):
        if tensorflow_backend():
            return super().__call__(inputs, *args, **kwargs)
        # Another backend: tf.Tensors in, tf.Tensors out, no conversion (see the module docstring).
        return self.call(inputs, *args, **kwargs)

    def uniform(self, shape, minval=0.0, maxval=1.0):
        """float32 uniform samples in [minval, maxval) from this layer's seed stream."""
        if self._tf_generator is not None:
            return self._tf_generator.uniform(shape, minval=minval, maxval=maxval, dtype=tf.float32)
        return keras.random.uniform(shape, minval=minval, maxval=maxval, dtype="float32", seed=self.seed_generator)

    def randint(self, shape, minval, maxval):
        """int32 samples in [minval, maxval)."""
        if self._tf_generator is not None:
            return self._tf_generator.uniform(shape, minval=minval, maxval=maxval, dtype=tf.int32)
        return keras.random.randint(shape, minval, maxval, dtype="int32", seed=self.seed_generator)

    def call_keras_data_layer(self, layer, method, *args, **kwargs):
        """``getattr(layer, method)(...)`` of a Keras core preprocessing layer, on TensorFlow: its
        ``__call__`` switches backend inside tf.data by itself, its other methods do not."""
        if tensorflow_backend():
            return getattr(layer, method)(*args, **kwargs)
        layer.backend.set_backend("tensorflow")
        try:
            return getattr(layer, method)(*args, **kwargs)
        finally:
            layer.backend.reset()


class TensorFlowSequential(keras.Sequential):
    """``keras.Sequential`` of ``TensorFlowOpsLayer``s; under another backend it calls them in
    order on tf.Tensors (Keras' functional call would convert them)."""

    def __call__(self, inputs, *args, **kwargs):
        if tensorflow_backend():
            return super().__call__(inputs, *args, **kwargs)
        for layer in self.layers:
            if not isinstance(layer, keras.layers.Identity):  # Keras' Identity would convert too
                inputs = layer(inputs, *args, **kwargs)
        return inputs
