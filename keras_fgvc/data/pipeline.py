"""Table -> tf.data: read, decode, resize, (cache), shuffle, batch, prefetch.

Augmentation is not done here for pipelines whose augmentation layers live in the model (5K);
``augment`` may be passed for pipelines that augment inside tf.data.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_fgvc.data.decode import model_pixels


@dataclass(frozen=True)
class PipelineSpec:
    image_size: int
    batch_size: int
    # Table column of integer class labels; None gives images only (prediction).
    label: Optional[str] = None
    channels: int = 3
    cache: bool = True
    shuffle_buffer: int = 2048
    seed: int = 0


def build(table, spec: PipelineSpec, training: bool, augment=None) -> tf.data.Dataset:
    """A batched dataset of ``images`` or ``(images, labels)`` from ``table``.

    Images are float32 [B, S, S, C] in [0, 255]; labels are int32 [B] from column ``spec.label``,
    which must have no missing value.

    Example:
        >>> ds = build(table, PipelineSpec(64, 32, label="mask"), training=True)  # doctest: +SKIP
    """
    paths = tf.constant(table["path"].astype(str).to_numpy())
    images = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: tf.cast(model_pixels(tf.io.read_file(path), spec.image_size, spec.channels), tf.uint8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if spec.label:
        values = table[spec.label].to_numpy().astype("float64")
        if np.isnan(values).any():
            raise ValueError(f"label column '{spec.label}' has missing values; filter the table first")
        ds = tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(values.astype("int32"))))
    else:
        ds = images
    if spec.cache:
        ds = ds.cache()  # uint8 after resize: 4x smaller than float32
    if training:
        ds = ds.shuffle(min(spec.shuffle_buffer, len(table)), seed=spec.seed, reshuffle_each_iteration=True)
    ds = ds.batch(spec.batch_size, drop_remainder=False)
    to_float = (lambda x, y: (tf.cast(x, tf.float32), y)) if spec.label else (lambda x: tf.cast(x, tf.float32))
    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        if spec.label:
            ds = ds.map(lambda x, y: (augment(x, training=training), y), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda x: augment(x, training=training), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def split_rows(num_rows: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Disjoint random index sets with the given fractions; the remainder comes last."""
    order = np.random.default_rng(seed).permutation(num_rows)
    counts = [int(round(f * num_rows)) for f in fractions]
    bounds = np.cumsum([0] + counts)
    parts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return parts + [order[bounds[-1]:]]
