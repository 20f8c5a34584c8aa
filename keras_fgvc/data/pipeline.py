"""Table -> tf.data: row order, decoded pixels (cached once per data set), batch, augment, prefetch.

The data contract (DESIGN.md): ``build(table, spec, training)`` yields ``(inputs, targets)`` dicts
from a declared column -> key mapping, so one pipeline feeds softmax heads, margin heads (the
label as an input), multi-label targets with missing entries and retrieval alike:

    inputs   {"image": float32 [B, S, S, C] in [0, 255] (uint8 with spec.image_dtype="uint8"),
              "label": int32 [B] (margin heads only)}
    targets  {output key: labels}, one entry per trained model output

Label-mixing augmentation (CutMix, MixUp) runs here, on the batched dicts; image-only augmentation
runs here too when the stage places it in the data (``augment``), otherwise in the training step.
"""

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from keras_fgvc.data import pixel_cache
from keras_fgvc.data.decode import random_crop_pixels
from keras_fgvc.data.tfrecord import encoded_images


@dataclass(frozen=True)
class PipelineSpec:
    image_size: int
    batch_size: int
    # {model output key: table column, or a list of columns for a multi-label vector}. Empty: the
    # dataset yields inputs only (prediction). A column with NaN stays float32 with NaN ("no label",
    # for the masked losses); an integer-valued column without NaN becomes int32.
    targets: Mapping[str, object] = field(default_factory=dict)
    # Table column fed as inputs["label"] (margin heads put their margin on it; NaN -> -1: no margin).
    label_input: Optional[str] = None
    channels: int = 3
    resize: str = "squash"  # decode.RESIZE_POLICIES
    box_mode: str = "none"  # decode.BOX_MODES: crop to the object box or erase around it
    # True: decoded pixels come from the shared on-disk cache (data.pixel_cache), decoded once per
    # data set and settings. False: decode every epoch (data larger than the disk; TFRecord streams).
    cache: bool = True
    cache_dir: Optional[str] = None
    shuffle_buffer: int = 2048  # only for TFRecord streams without the cache; file rows shuffle fully
    seed: int = 0
    drop_remainder: bool = False
    # Label mixing (CutMix/MixUp) one-hot encodes its single target with this many classes.
    num_classes: Optional[int] = None
    # (scale, ratio) of a random-resized crop taken while decoding (decode.random_crop_pixels), for
    # training without the cache: JPEGs decode only the crop window. Evaluation ignores it.
    decode_crop: Optional[tuple] = None
    # Class-balanced batches for triplet/center losses: (P classes, K images each) from the column
    # of the first target; batch_size must equal P * K.
    pk: Optional[tuple] = None
    # "float32", or "uint8" for training steps: a quarter of the bytes to the device (the network's
    # input casts). Augmented or mixed pixels are rounded back to uint8 (at most 0.5 off).
    image_dtype: str = "float32"


def _column_values(table, columns, name) -> np.ndarray:
    """One target's values: int32 [N] for a complete integer column, float32 otherwise (NaN kept)."""
    if isinstance(columns, (list, tuple)):
        return table[list(columns)].to_numpy(dtype="float64").astype("float32")
    if columns not in table.columns:
        raise KeyError(f"target '{name}': column '{columns}' is not in the table ({', '.join(map(str, table.columns))})")
    values = table[columns].to_numpy(dtype="float64")
    if not np.isnan(values).any() and np.all(values == np.round(values)):
        return values.astype("int32")
    return values.astype("float32")


def _row_order(table, spec: PipelineSpec, training: bool) -> tf.data.Dataset:
    """Row indices in the order they are read: all rows, fully reshuffled each epoch when training,
    or P x K class-balanced groups."""
    num_rows = len(table)
    if training and spec.pk:
        from keras_fgvc.data.sampling import pk_dataset

        classes, per_class = spec.pk
        if classes * per_class != spec.batch_size:
            raise ValueError(f"P x K batches need batch_size = {classes} x {per_class}, got {spec.batch_size}")
        (column,) = list(spec.targets.values())[:1]
        return pk_dataset(table[column].to_numpy("float64"), classes, per_class, spec.seed)
    rows = tf.data.Dataset.range(num_rows)
    if training:
        # Shuffling indices, not decoded images, costs nothing: every epoch is a full permutation.
        rows = rows.shuffle(max(1, num_rows), seed=spec.seed, reshuffle_each_iteration=True)
    return rows


def _batched_images(table, spec: PipelineSpec, training: bool) -> tf.data.Dataset:
    """Batches of ``(rows int64 [B], images uint8 [B, S, S, C])`` in the order of ``_row_order``."""
    shape = [spec.image_size, spec.image_size, spec.channels]
    if spec.cache and not (training and spec.decode_crop):
        array, positions = pixel_cache.lookup(table, spec.image_size, spec.channels, spec.resize, spec.box_mode,
                                              spec.cache_dir)

        def take(rows):
            # Read the memory-mapped rows in ascending order (sequential on disk), then restore the batch order.
            wanted = positions[rows]
            ascending = np.sort(wanted)
            return array[ascending][np.searchsorted(ascending, wanted)]

        def gather(rows):
            images = tf.numpy_function(take, [rows], tf.uint8, stateful=False)
            return rows, tf.ensure_shape(images, [None, *shape])

        batches = _row_order(table, spec, training).batch(spec.batch_size, drop_remainder=spec.drop_remainder)
        return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if training and spec.decode_crop:
        scale, ratio = spec.decode_crop

        def decode(row, encoded):
            return tf.cast(random_crop_pixels(encoded, spec.image_size, spec.channels, scale, ratio, spec.seed),
                           tf.uint8)
    else:
        decode = pixel_cache.decoder(table, spec.image_size, spec.channels, spec.resize, spec.box_mode)
    if "record_file" in table.columns:  # a stream: shards are read in order, so shuffle decoded images
        # Training shuffles anyway, so records come in whichever order they are ready.
        ds = encoded_images(table, deterministic=not training).map(
            lambda row, encoded: (row, decode(row, encoded)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=not training)
        if training:
            ds = ds.shuffle(min(spec.shuffle_buffer, max(1, len(table))), seed=spec.seed, reshuffle_each_iteration=True)
    else:
        paths = tf.constant(table["path"].astype(str).to_numpy())
        ds = _row_order(table, spec, training).map(
            lambda row: (row, decode(row, tf.io.read_file(tf.gather(paths, row)))),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(spec.batch_size, drop_remainder=spec.drop_remainder)


def _as_dtype(images, dtype: str):
    if dtype == "uint8" and images.dtype != tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    return tf.cast(images, dtype)


def build(table, spec: PipelineSpec, training: bool, augment=None, mixing=None) -> tf.data.Dataset:
    """A batched dataset of ``(inputs, targets)`` dicts, or of ``inputs`` when ``spec.targets`` is empty.

    Args:
        table: a checked Table (``data.checks.check_images``: absolute ``path``, ``orientation``,
            the label columns; bad files already removed).
        spec: what to read and how to batch.
        training: shuffle (and augment) when True.
        augment: image-only layer applied to ``inputs["image"]`` in tf.data (None: none here).
        mixing: a label-mixing layer (``augment.mixing``: {"images", "labels"} dict contract); only
            with one target, which it one-hot encodes with ``spec.num_classes`` and mixes.

    Example:
        >>> ds = build(table, PipelineSpec(64, 32, targets={"logits": "mask"}), training=True)  # doctest: +SKIP
        >>> inputs, targets = next(iter(ds))  # inputs["image"]: [32, 64, 64, 3]; targets["logits"]: [32]
    """
    if mixing is not None and (len(spec.targets) != 1 or not spec.num_classes):
        raise ValueError("label mixing needs exactly one target and spec.num_classes")
    columns = {key: _column_values(table, column, key) for key, column in spec.targets.items()}
    if spec.label_input:
        label = np.nan_to_num(table[spec.label_input].to_numpy(dtype="float64"), nan=-1.0)
        columns["__label__"] = label.astype("int32")
    columns = {key: tf.constant(values) for key, values in columns.items()}

    def to_example(rows, images):
        inputs = {"image": images}
        if augment is not None:
            inputs["image"] = augment(tf.cast(images, tf.float32), training=training)
        if not columns:
            return inputs
        targets = {key: tf.gather(values, rows) for key, values in columns.items()}
        if "__label__" in targets:
            inputs["label"] = targets.pop("__label__")
        if mixing is not None and training:
            (key,) = targets
            mixed = mixing({"images": tf.cast(inputs["image"], tf.float32),
                            "labels": tf.one_hot(targets[key], spec.num_classes)}, training=True)
            inputs["image"], targets[key] = mixed["images"], mixed["labels"]
        inputs["image"] = _as_dtype(inputs["image"], spec.image_dtype)
        return (inputs, targets) if targets else inputs

    ds = _batched_images(table, spec, training).map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Under tf.distribute each worker reads every row index and keeps its share of the batches:
    # the rows are not files, so sharding by file (the default) would fall back to this anyway.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
