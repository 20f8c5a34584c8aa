"""TFRecord shards of a Table: the original encoded image bytes plus the table's columns.

    <out_dir>/<split>-00000-of-00008.tfrecord    one tf.train.Example per table row
    <out_dir>/<split>.json                       the index: columns, rows per shard, classes, version

Shards exist for reading speed: one long sequential read per shard instead of one small read per
image is what keeps cloud storage (``gs://``) and TPU hosts busy. The bytes are the image files'
own, never re-encoded, so decoding gives exactly the pixels of the file pipeline (``data.decode``).
Every output path goes through ``tf.io.gfile``: ``out_dir`` may be local, ``file://`` or ``gs://``.

Features of each Example:
    image/encoded     the image file's bytes
    image/filename    its path relative to the data root (for reports; never read back as a file)
    row               its position in the written table (``sources.tfrecord`` restores that order)
    column/<name>     every other column of the table: int64 (integer and bool columns), float32
                      (float columns, NaN kept) or bytes (text; an empty list where it is missing)

Rows go to the shards round-robin (row i -> shard i % N): sources list their images class by
class, so contiguous chunks would give each shard a few classes, and a reader interleaving a
few shards would see long runs of one class.
"""

import contextlib
import json
import os
import posixpath
import uuid

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_fgvc.errors import DataError, UserError

FORMAT = "keras_fgvc.tfrecord"
VERSION = 1
IMAGE_KEY = "image/encoded"
FILENAME_KEY = "image/filename"
ROW_KEY = "row"
COLUMN_PREFIX = "column/"
# Columns a Table read from shards carries to find each row's record (sources/tfrecord.py).
RECORD_COLUMNS = ("record_file", "record_index")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def join(folder: str, name: str) -> str:
    """``folder/name`` for local folders and URLs (``gs://bucket/x``, ``file:///tmp/x``) alike."""
    return folder.rstrip("/") + "/" + name if "://" in folder else os.path.join(folder, name)


def index_path(folder: str, split: str) -> str:
    return join(folder, f"{split}.json")


def existing_outputs(out_dir: str, split: str) -> list[str]:
    """The shards and index of ``split`` already in ``out_dir`` (any shard count)."""
    if not tf.io.gfile.isdir(out_dir):
        return []
    found = sorted(tf.io.gfile.glob(join(out_dir, f"{split}-*-of-*.tfrecord")))
    index = index_path(out_dir, split)
    return found + ([index] if tf.io.gfile.exists(index) else [])


def check_writable(out_dir: str, split: str, overwrite: bool, switch: str = "overwrite=True"):
    """UserError naming the first existing file of ``split`` unless ``overwrite``; call before any work.

    Args:
        out_dir: the shard folder.
        split: the split about to be written.
        overwrite: replacing existing files is allowed.
        switch: how the caller's user allows it, for the message (a task says its config key).
    """
    existing = existing_outputs(out_dir, split)
    if existing and not overwrite:
        raise UserError(
            f"{existing[0]} already exists ({len(existing)} file(s) of split '{split}' in {out_dir}); "
            f"set {switch} to replace them"
        )


def _column_specs(table: pd.DataFrame) -> list[dict]:
    """{name, kind (int | float | text), dtype} of every column written as ``column/<name>``."""
    specs = []
    for name in table.columns:
        if name == "path" or name in RECORD_COLUMNS:
            continue
        series = table[name]
        missing = bool(series.isna().any())
        if (pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series)) and not missing:
            kind = "int"
        elif pd.api.types.is_numeric_dtype(series):
            kind = "float"  # nullable Int64/boolean with NA included: NaN marks the missing entries
        elif all(isinstance(value, str) for value in series.dropna()):
            kind = "text"
        else:
            raise UserError(f"column '{name}' holds values that are neither numbers nor text; drop it before writing TFRecords")
        specs.append({"name": str(name), "kind": kind, "dtype": str(series.dtype)})
    return specs


def _scheme(path: str) -> str:
    head, sep, _ = path.partition("://")
    return head + sep if sep else ""


def _relative_names(paths: list[str], root) -> list[str]:
    """Paths relative to ``root`` (or to the images' common folder); unchanged where no base is common."""
    prefixes = {_scheme(p) for p in paths}
    if len(prefixes) != 1 or (root is not None and _scheme(root) not in prefixes):
        return list(paths)
    prefix = prefixes.pop()
    pathlib = posixpath if prefix else os.path
    rests = [p[len(prefix):] for p in paths]
    try:
        base = root[len(prefix):] if root is not None else pathlib.commonpath([pathlib.dirname(r) for r in rests])
    except ValueError:  # absolute and relative paths mixed: no common folder
        return list(paths)
    return [pathlib.relpath(r, base) for r in rests]


def _column_values(table: pd.DataFrame, specs: list[dict]) -> dict[str, list]:
    values = {}
    for spec in specs:
        series = table[spec["name"]]
        if spec["kind"] == "int":
            values[spec["name"]] = [[int(v)] for v in series.to_numpy()]
        elif spec["kind"] == "float":
            values[spec["name"]] = [[float(v)] for v in series.to_numpy(dtype="float64", na_value=np.nan)]
        else:
            values[spec["name"]] = [[] if pd.isna(v) else [v.encode("utf-8")] for v in series.to_numpy(dtype=object)]
    return values


def _example(row: int, encoded: bytes, filename: str, specs: list[dict], values: dict) -> bytes:
    feature = {
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        FILENAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode("utf-8")])),
        ROW_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[row])),
    }
    for spec in specs:
        value = values[spec["name"]][row]
        key = COLUMN_PREFIX + spec["name"]
        if spec["kind"] == "int":
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
        elif spec["kind"] == "float":
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
        else:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _json_value(value):
    if isinstance(value, np.generic):
        return value.item()  # numpy class ids (e.g. from a CSV) are not JSON
    raise UserError(f"table.attrs['classes'] holds {value!r} ({type(value).__name__}); classes must be numbers or text")


def _write_text(path: str, text: str):
    """Write through a temp name and rename, so ``path`` is either absent or complete."""
    folder, name = path.rsplit("/", 1) if "://" in path else os.path.split(path)
    tmp = join(folder, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise


def _read_rows(table: pd.DataFrame, split: str):
    """(row, bytes) for every row of ``table``; a file that cannot be read is a DataError naming it."""
    iterator = encoded_images(table).as_numpy_iterator()
    try:
        yield from iterator
    except tf.errors.OpError as error:
        raise DataError(f"split '{split}': cannot read an image: {error.message.splitlines()[0]}") from None


def write(table: pd.DataFrame, out_dir: str, shards: int, split: str = "train", root=None, overwrite: bool = False) -> list[str]:
    """Write ``table`` as ``<out_dir>/<split>-NNNNN-of-MMMMM.tfrecord`` shards plus ``<split>.json``.

    Each shard is written under a hidden temp name and renamed when complete, and the index is
    written last, so a killed run leaves no half-written shard under a final name (only hidden
    ``.<name>.tmp-*`` files). With ``overwrite``, shards of an earlier write of this split that the
    new one does not replace (another shard count) are removed after the new index is in place.

    Args:
        table: a Table: ``path`` (files, local or any URL ``tf.io.read_file`` reads) or
            ``record_file``/``record_index`` (a Table of ``sources.tfrecord``, re-sharded), label
            columns, optional ``image_id`` and ``bbox_*``; ``attrs["classes"]`` goes to the index.
        out_dir: the shard folder (local, ``file://`` or ``gs://``); created if missing.
        shards: how many shards; more shards than rows gives one row per shard.
        split: the split name, the shards' name prefix.
        root: the data root the stored file names are relative to (None: the images' common folder).
        overwrite: replace existing shards of ``split``; otherwise they are a UserError naming one.

    Returns:
        The shard paths, in shard order.

    Example:
        >>> table = sources.load("imagefolder", "/data/flowers")  # doctest: +SKIP
        >>> write(table, "gs://bucket/flowers", shards=16, root="/data/flowers")  # doctest: +SKIP
        ['gs://bucket/flowers/train-00000-of-00016.tfrecord', ...]
    """
    if shards < 1:
        raise UserError(f"shards must be at least 1, got {shards}")
    if len(table) == 0:
        raise UserError(f"split '{split}': the table has no rows; nothing to write")
    check_writable(out_dir, split, overwrite)
    specs = _column_specs(table)
    values = _column_values(table, specs)
    from_records = "record_file" in table.columns
    paths = table["path"].astype(str).tolist()
    filenames = paths if from_records else _relative_names(paths, root)
    count = min(shards, len(table))
    names = [shard_name(split, i, count) for i in range(count)]
    finals = [join(out_dir, name) for name in names]
    tmps = [join(out_dir, f".{name}.tmp-{uuid.uuid4().hex}") for name in names]
    stale = sorted(set(existing_outputs(out_dir, split)) - set(finals) - {index_path(out_dir, split)})
    tf.io.gfile.makedirs(out_dir)
    rows_per_shard = [0] * count
    try:
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(tf.io.TFRecordWriter(tmp)) for tmp in tmps]
            for row, encoded in _read_rows(table, split):
                row = int(row)
                writers[row % count].write(_example(row, encoded, filenames[row], specs, values))
                rows_per_shard[row % count] += 1
        for tmp, final in zip(tmps, finals):
            tf.io.gfile.rename(tmp, final, overwrite=True)
    except BaseException:
        for tmp in tmps:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        raise
    classes = table.attrs.get("classes")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "split": split,
        "rows": len(table),
        "column_order": [str(c) for c in table.columns if c not in RECORD_COLUMNS],
        "columns": specs,
        "shards": [{"file": name, "rows": rows} for name, rows in zip(names, rows_per_shard)],
        "classes": list(classes) if classes is not None else None,
    }
    _write_text(index_path(out_dir, split), json.dumps(index, indent=1, default=_json_value) + "\n")
    for path in stale:
        tf.io.gfile.remove(path)
    return finals


def encoded_images(table: pd.DataFrame, deterministic: bool = True) -> tf.data.Dataset:
    """``(row, encoded bytes)`` for every row of ``table``; row is its int64 position 0..len-1.

    A Table of ``sources.tfrecord`` (``record_file``/``record_index`` columns) streams its shards
    (interleaved over the files) and keeps only the records of its own rows, so a subset such as a
    train/val split reads just its rows; the order is the shards', hence the row numbers. Any
    other Table reads its ``path`` files, in table order.

    Args:
        table: a Table with ``record_file``/``record_index`` or with ``path``.
        deterministic: False lets tf.data hand out whichever record or file is ready first (the
            interleave and the reads), for consumers that place each row by its number (the pixel
            cache, dataset statistics) or shuffle anyway (a training stream).

    Example:
        >>> val = table.iloc[val_rows]  # doctest: +SKIP
        >>> for row, encoded in encoded_images(val).take(1):  # doctest: +SKIP
        ...     image = tf.io.decode_image(encoded); label = val["label"].iloc[int(row)]
    """
    rows = np.arange(len(table), dtype=np.int64)
    if "record_file" not in table.columns:
        paths = table["path"].astype(str).to_numpy()
        return tf.data.Dataset.from_tensor_slices((rows, paths)).map(
            lambda row, path: (row, tf.io.read_file(path)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic)
    files = table["record_file"].astype(str).tolist()
    keys = [f"{file}:{index}" for file, index in zip(files, table["record_index"].to_numpy(dtype=np.int64))]
    if len(set(keys)) != len(keys):
        # A hash table maps a record to one row: repeat rows (oversampling) after reading instead.
        raise DataError("the table lists a record twice (same record_file and record_index)")
    # Records of other rows (the rest of a split's shards) look up -1 and are dropped.
    lookup = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(rows)), default_value=-1)
    shard_files = sorted(set(files))

    def records(file):
        return tf.data.TFRecordDataset(file).enumerate().map(lambda index, record: (file, index, record))

    def row_of(file, index, record):
        return lookup.lookup(tf.strings.join([file, tf.strings.as_string(index)], ":")), record

    def image_bytes(row, record):
        return row, tf.io.parse_single_example(record, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})[IMAGE_KEY]

    return (
        tf.data.Dataset.from_tensor_slices(shard_files)
        .interleave(records, cycle_length=min(len(shard_files), 16), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=deterministic)
        .map(row_of)
        .filter(lambda row, record: row >= 0)
        .take(len(table))  # every row found: stop instead of scanning the rest of the shards
        .map(image_bytes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    )
