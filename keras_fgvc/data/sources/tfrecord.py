"""TFRecord shards written by ``data.tfrecord.write`` (``python run.py task=to_tfrecord``).

    root/<split>.json                          the index: columns, rows per shard, classes
    root/<split>-00000-of-00008.tfrecord ...   the shards: image bytes + every column per row

``root`` may be local, ``file://`` or ``gs://`` (all reads go through ``tf.io.gfile``). The Table
holds the shards' columns (labels with NaN, ``image_id``, ``bbox_*``), ``path`` as the original
path relative to the data root (for reports; the images live in the shards), and where each
row's record is: ``record_file`` (the shard) and ``record_index`` (its position there).
``data.tfrecord.encoded_images(table)`` streams the image bytes of exactly the table's rows.
"""

import json

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_fgvc.data.tfrecord import (
    COLUMN_PREFIX,
    FILENAME_KEY,
    FORMAT,
    ROW_KEY,
    VERSION,
    index_path,
    join,
)
from keras_fgvc.errors import DataError

READ_BATCH = 512


def _read_index(root: str, split: str) -> tuple[str, dict]:
    path = index_path(root, split)
    if not tf.io.gfile.exists(path):
        there = tf.io.gfile.glob(join(root, "*.json")) if tf.io.gfile.isdir(root) else []
        splits = sorted(p.rsplit("/", 1)[-1][: -len(".json")] for p in there)
        hint = f"; splits here: {', '.join(splits)}" if splits else " (written by task=to_tfrecord)"
        raise DataError(f"{path}: TFRecord index not found, expected <split>.json and its shards{hint}")
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            index = json.loads(f.read())
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a TFRecord index ({error})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: not a TFRecord index of {FORMAT} (no \"format\": \"{FORMAT}\")")
    if index.get("version") != VERSION:
        raise DataError(f"{path}: index version {index.get('version')!r}; this keras_fgvc reads version {VERSION}")
    return path, index


def _feature_spec(columns: list[dict]) -> dict:
    spec = {FILENAME_KEY: tf.io.FixedLenFeature([], tf.string), ROW_KEY: tf.io.FixedLenFeature([], tf.int64)}
    kinds = {"int": tf.io.FixedLenFeature([], tf.int64), "float": tf.io.FixedLenFeature([], tf.float32),
             "text": tf.io.RaggedFeature(tf.string)}  # text: zero values where the entry is missing
    for column in columns:
        spec[COLUMN_PREFIX + column["name"]] = kinds[column["kind"]]
    return spec


def _parse_batch(records, spec: dict) -> dict:
    parsed = tf.io.parse_example(records, spec)
    out = {}
    for key, value in parsed.items():
        if isinstance(value, tf.RaggedTensor):
            out[key] = value.to_tensor(default_value="", shape=[None, 1])[:, 0]
            out[key + "/present"] = value.row_lengths() > 0
        else:
            out[key] = value
    return out


def _read_shard(path: str, spec: dict, index_file: str) -> dict[str, np.ndarray]:
    """Every non-image feature of one shard as numpy arrays, in record order."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: TFRecord shard not found (listed in {index_file})")
    batches = tf.data.TFRecordDataset(path).batch(READ_BATCH).map(lambda records: _parse_batch(records, spec))
    try:
        chunks = list(batches.as_numpy_iterator())
    except tf.errors.DataLossError as error:
        raise DataError(f"{path}: corrupt TFRecord shard ({error.message.splitlines()[0]})") from None
    except tf.errors.InvalidArgumentError as error:
        raise DataError(f"{path}: a record lacks the features {index_file} lists ({error.message.splitlines()[0]})") from None
    if not chunks:
        return {ROW_KEY: np.zeros([0], np.int64)}
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def _column(values: dict, column: dict) -> pd.Series:
    raw = values[COLUMN_PREFIX + column["name"]]
    if column["kind"] == "text":
        present = values[COLUMN_PREFIX + column["name"] + "/present"]
        return pd.Series([v.decode("utf-8") if p else np.nan for v, p in zip(raw, present)])
    series = pd.Series(raw.astype("int64" if column["kind"] == "int" else "float64"))
    try:
        return series.astype(column["dtype"])  # the written dtype: int64 labels stay int64
    except (TypeError, ValueError):
        return series


def has_split(root, split: str) -> bool:
    """Whether ``root`` (local or gs://) has the ``split`` index that task=to_tfrecord writes."""
    return tf.io.gfile.exists(index_path(root, split))


def load(root, split="train"):
    """The ``split`` Table of a TFRecord folder: its columns, ``path``, ``record_file``, ``record_index``.

    Reads every shard once (the image bytes are skipped, not decoded) and restores the written
    table's row order, column order, dtypes and ``attrs["classes"]``. Raises DataError naming the
    file when the index or a shard is missing, a shard is corrupt or holds other rows than the
    index says.

    Args:
        root: the folder of ``<split>.json`` and its shards (local, ``file://`` or ``gs://``).
        split: which split's index to read.

    Example:
        >>> table = load("gs://bucket/flowers", "train")  # doctest: +SKIP
        >>> from keras_fgvc.data.tfrecord import encoded_images  # doctest: +SKIP
        >>> ds = encoded_images(table.iloc[::2])  # (row, bytes) of every other row  # doctest: +SKIP
    """
    index_file, index = _read_index(root, split)
    try:
        columns, shards, order = index["columns"], index["shards"], index["column_order"]
    except KeyError as error:
        raise DataError(f"{index_file}: index lacks the key {error}") from None
    spec = _feature_spec(columns)
    parts, files, positions = [], [], []
    for shard in shards:
        path = join(root, shard["file"])
        values = _read_shard(path, spec, index_file)
        count = len(values[ROW_KEY])
        if count != shard["rows"]:
            raise DataError(f"{path}: {count} records, but {index_file} lists {shard['rows']} (a shard replaced or cut short)")
        if count:
            parts.append(values)
            files += [path] * count
            positions.append(np.arange(count, dtype=np.int64))
    if not parts:
        raise DataError(f"{index_file}: its shards hold no records")
    values = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    rows = values[ROW_KEY]
    if not np.array_equal(np.sort(rows), np.arange(int(index.get("rows", len(rows))))):
        raise DataError(f"{index_file}: the shards' rows do not match the index (shards of different writes mixed?)")
    table = pd.DataFrame({column["name"]: _column(values, column) for column in columns})
    table["path"] = [name.decode("utf-8") for name in values[FILENAME_KEY]]
    table["record_file"] = files
    table["record_index"] = np.concatenate(positions)
    # Records are in shard order; the written table's order is the ``row`` feature.
    table = table.iloc[np.argsort(rows, kind="stable")].reset_index(drop=True)
    missing = [name for name in order if name not in table.columns]
    if missing:
        raise DataError(f"{index_file}: column_order names {', '.join(missing)}, which no column spec lists")
    table = table[[*order, "record_file", "record_index"]]
    if index.get("classes") is not None:
        table.attrs["classes"] = list(index["classes"])
    return table
