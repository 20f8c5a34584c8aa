"""A ``keras.export.ExportArchive`` whose endpoints are TensorFlow code around the model, under
every Keras backend.

Our endpoints decode image bytes, take softmaxes and rank against a gallery: TensorFlow code around
one model call. Under TensorFlow, Keras traces such a function as it is. Under JAX, ExportArchive
converts the function given to ``add_endpoint`` with jax2tf, which cannot take TensorFlow's string
ops. So the model alone is one endpoint, ``from_pixels`` (float pixels [B, S, S, C] in [0, 255] ->
the model's outputs; jax2tf-converted under JAX, a plain tf.function under TensorFlow), and every
other endpoint is a tf.function that calls it. The SavedModel serves from TensorFlow either way.
"""

import keras
import tensorflow as tf

FROM_PIXELS = "from_pixels"


def model_archive(model: keras.Model, image_size: int, channels: int):
    """``(archive, forward)``: an archive tracking ``model``, and ``forward(pixels)`` -> the model's
    outputs in inference mode, a TensorFlow function to call inside the other endpoints."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None, image_size, image_size, channels], tf.float32, name="pixels")
    forward = archive.add_endpoint(FROM_PIXELS, lambda pixels: model(pixels, training=False), input_signature=[spec])
    return archive, forward


def add_tf_endpoint(archive, name: str, fn, input_signature: list) -> None:
    """Add ``fn`` (TensorFlow code) as endpoint ``name`` without any backend conversion."""
    function = tf.function(fn, input_signature=input_signature)
    function.get_concrete_function()  # ExportArchive takes a tf.function once it has been traced
    archive.add_endpoint(name, function)
