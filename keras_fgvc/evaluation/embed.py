"""Embeddings of a model over batches of images: one compiled function, optional flip TTA.

Retrieval compares L2-normalised embeddings by cosine similarity. Flip TTA embeds an image and its
mirror and keeps the normalised sum: the direction both views agree on (a common test-time
augmentation in landmark and instance retrieval).
"""

import keras
import numpy as np
from keras import ops

from keras_fgvc.compiled import compiled


def embedding_function(model: keras.Model, flip: bool = False, output: str = "embedding"):
    """``images [B, S, S, C] -> float32 [B, D]`` L2-normalised embeddings of ``model``'s ``output``.

    Compiled for the backend (``keras_fgvc.compiled``): it is called once per batch.

    Args:
        model: an inference model with a dict output holding ``output``.
        flip: add the embedding of the horizontally mirrored image before normalising.
        output: the output key to read.

    Example:
        >>> embed = embedding_function(model, flip=True)  # doctest: +SKIP
        >>> embed(images).shape  # (B, D)  # doctest: +SKIP
    """

    def embed(images):
        vectors = ops.cast(model(images, training=False)[output], "float32")
        if flip:
            vectors = vectors + ops.cast(model(ops.flip(images, axis=2), training=False)[output], "float32")
        return ops.normalize(vectors, axis=-1)

    return compiled(embed, model)


def embed_batches(embed, batches, dim: int) -> np.ndarray:
    """``embed`` over an iterable of image batches, concatenated: float32 [N, dim] (N may be 0)."""
    parts = [np.asarray(ops.convert_to_numpy(embed(images)), np.float32) for images in batches]
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
