"""Table -> tf.data: read, decode, resize, (cache), shuffle, batch, augment, prefetch.

The data contract (DESIGN.md): ``build(table, spec, training)`` yields ``(inputs, targets)`` dicts
from a declared column -> key mapping, so one pipeline feeds softmax heads, margin heads (the
label as an input), multi-label targets with missing entries and retrieval alike:

    inputs   {"image": float32 [B, S, S, C] in [0, 255], "label": int32 [B] (margin heads only)}
    targets  {output key: labels}, one entry per trained model output

Label-mixing augmentation (CutMix, MixUp) runs here, on the batched dicts; image-only augmentation
runs here too when the stage places it in the data (``augment``), otherwise in the training step.
"""

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_fgvc.data.decode import model_pixels


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
    cache: bool = True
    shuffle_buffer: int = 2048
    seed: int = 0
    drop_remainder: bool = False
    # Label mixing (CutMix/MixUp) one-hot encodes its single target with this many classes.
    num_classes: Optional[int] = None


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


def build(table, spec: PipelineSpec, training: bool, augment=None, mixing=None) -> tf.data.Dataset:
    """A batched dataset of ``(inputs, targets)`` dicts, or of ``inputs`` when ``spec.targets`` is empty.

    Args:
        table: a Table (pandas frame with an absolute ``path`` column and the label columns).
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
    paths = tf.constant(table["path"].astype(str).to_numpy())
    images = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: tf.cast(model_pixels(tf.io.read_file(path), spec.image_size, spec.channels), tf.uint8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    columns = {key: _column_values(table, column, key) for key, column in spec.targets.items()}
    if spec.label_input:
        label = np.nan_to_num(table[spec.label_input].to_numpy(dtype="float64"), nan=-1.0)
        columns["__label__"] = label.astype("int32")
    ds = tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(columns))) if columns else images
    if spec.cache:
        ds = ds.cache()  # uint8 after resize: 4x smaller than float32
    if training:
        ds = ds.shuffle(min(spec.shuffle_buffer, max(1, len(table))), seed=spec.seed, reshuffle_each_iteration=True)
    ds = ds.batch(spec.batch_size, drop_remainder=spec.drop_remainder)

    def to_example(image, values=None):
        inputs = {"image": tf.cast(image, tf.float32)}
        if augment is not None:
            inputs["image"] = augment(inputs["image"], training=training)
        if values is None:
            return inputs
        targets = dict(values)
        if "__label__" in targets:
            inputs["label"] = targets.pop("__label__")
        if mixing is not None and training:
            (key,) = targets
            mixed = mixing({"images": inputs["image"], "labels": tf.one_hot(targets[key], spec.num_classes)},
                           training=True)
            inputs["image"], targets[key] = mixed["images"], mixed["labels"]
        return (inputs, targets) if targets else inputs

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def split_rows(num_rows: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Disjoint random index sets with the given fractions; the remainder comes last."""
    order = np.random.default_rng(seed).permutation(num_rows)
    counts = [int(round(f * num_rows)) for f in fractions]
    bounds = np.cumsum([0] + counts)
    parts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return parts + [order[bounds[-1]:]]
