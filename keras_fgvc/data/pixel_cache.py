"""Decode once, not once per stage: a Table's resized uint8 pixels, shared by every stage and run.

On 2.2k real 300 px JPEGs the first epoch of each 5K stage took 90-120 s against ~20 s for later
ones, because every stage decoded and resized everything again (issue 13). Here the pixels a model
sees (``decode.model_pixels``) are written once to ``<cache_dir>/pixels/<key>.npy`` and memory-mapped:
the OS page cache keeps them in memory when they fit and reads them from disk when they do not.
The key is the data fingerprint (paths, sizes, mtimes) plus everything that changes the pixels
(size, channels, resize policy, box mode), so a changed file or setting never reuses stale pixels.
"""

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_fgvc.atomic import naming
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.data.tfrecord import encoded_images
from keras_fgvc.errors import DataError

BOX_COLUMNS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]
FILL_BATCH = 64
_OPEN = []  # open PixelStores: the stages of one process share one mapping


def row_identities(table, box_mode: str = "none") -> list:
    """What identifies each row's pixels: file path, size, mtime and EXIF orientation (or the TFRecord
    shard and index), plus the box when a box mode uses it."""
    if "record_file" in table.columns:
        identity = [f"{f}#{i}" for f, i in zip(table["record_file"], table["record_index"])]
    else:
        identity = []
        for path in table["path"].astype(str):
            stat = os.stat(path)
            identity.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
    orientation = np.asarray(table.get("orientation", np.ones(len(table))), np.int32)
    identity = [f"{item}|{angle}" for item, angle in zip(identity, orientation)]
    if box_mode != "none" and set(BOX_COLUMNS) <= set(table.columns):
        boxes = table[BOX_COLUMNS].to_numpy("float64")
        identity = [f"{item}|{','.join(map(str, box))}" for item, box in zip(identity, boxes)]
    return identity


def cache_key(identities: list, image_size: int, channels: int, resize: str, box_mode: str) -> str:
    """Hex key of these rows' pixels under these settings (row order matters: rows index the array)."""
    digest = hashlib.sha256()
    settings = {"size": image_size, "channels": channels, "resize": resize, "box": box_mode, "version": 1}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for item in identities:
        digest.update(item.encode() + b"\n")
    return digest.hexdigest()[:24]


def row_columns(table, box_mode: str) -> dict:
    """Per-row decode inputs: EXIF orientation and, for a box mode, the box (NaN = none)."""
    columns = {"orientation": np.asarray(table.get("orientation", np.ones(len(table))), np.int32)}
    if box_mode != "none":
        if not set(BOX_COLUMNS) <= set(table.columns):
            raise DataError(f"box mode '{box_mode}' needs box columns {', '.join(BOX_COLUMNS)}; this data set has none")
        columns["box"] = table[BOX_COLUMNS].to_numpy("float32")
    return columns


def decoder(table, image_size: int, channels: int, resize: str, box_mode: str):
    """A tf function ``(row, encoded) -> uint8 [S, S, C]`` with the row's orientation and box applied."""
    columns = {k: tf.constant(v) for k, v in row_columns(table, box_mode).items()}

    def decode(row, encoded):
        box = tf.gather(columns["box"], row) if "box" in columns else None
        pixels = model_pixels(encoded, image_size, channels, resize, tf.gather(columns["orientation"], row), box,
                              box_mode)
        return tf.cast(pixels, tf.uint8)

    return decode


def _first_undecodable(table, decode, done):
    """The path of the first row not yet written that TensorFlow cannot decode (a slow, exact search)."""
    for row in np.flatnonzero(~done):
        try:
            decode(tf.constant(row, tf.int64), tf.io.read_file(table["path"].iloc[row]))
        except tf.errors.OpError as error:
            return table["path"].iloc[row], error.message.splitlines()[0]
    return None, None


@dataclass
class PixelStore:
    """Decoded pixels of a data set: ``array[index[row identity]]`` is that row's image."""

    settings: tuple
    array: np.ndarray
    index: dict
    path: str

    def rows(self, identities) -> np.ndarray | None:
        """Positions of these rows in ``array``, or None when one of them is not in this store."""
        try:
            return np.fromiter((self.index[i] for i in identities), np.int64, len(identities))
        except KeyError:
            return None


def prepare(table, image_size: int, channels: int = 3, resize: str = "squash", box_mode: str = "none",
            cache_dir: str | None = None, verbose: bool = True) -> PixelStore:
    """Decode every row of ``table`` at most once (reusing ``<cache_dir>/pixels/<key>.npy``) and keep
    the store open, so any later subset of these rows (a stage's train or val split) reads from it.

    A driver calls this once with its whole table, before its stages split it.

    Args:
        table: a checked Table (``data.checks.check_images``: bad files removed, ``orientation`` set).
        image_size, channels, resize, box_mode: what ``decode.model_pixels`` does to each image.
        cache_dir: where ``pixels/<key>.npy`` lives (``checks.default_cache_dir()`` when None).
        verbose: print where the cache is and whether it was reused.

    Example:
        >>> store = prepare(table, 64)  # first run decodes; later stages and runs map the file  # doctest: +SKIP
    """
    from keras_fgvc.data.checks import default_cache_dir

    settings = (image_size, channels, resize, box_mode)
    identities = row_identities(table, box_mode)
    key = cache_key(identities, *settings)
    for store in _OPEN:
        if store.settings == settings and store.rows(identities) is not None and len(identities) == len(store.index):
            return store
    folder = os.path.join(cache_dir or default_cache_dir(), "pixels")
    path = os.path.join(folder, f"{key}.npy")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        _fill(table, path, *settings)
        if verbose:
            print(f"pixel cache: decoded {len(table)} images once -> {path}")
    elif verbose:
        print(f"pixel cache: reusing {path}")
    store = PixelStore(settings, np.load(path, mmap_mode="r"), {item: row for row, item in enumerate(identities)}, path)
    _OPEN.append(store)
    return store


def lookup(table, image_size: int, channels: int = 3, resize: str = "squash", box_mode: str = "none",
           cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(array, positions)``: the rows of ``table`` in an open store holding them all (the one a
    driver prepared for its whole table), or in a new store of just these rows."""
    settings = (image_size, channels, resize, box_mode)
    identities = row_identities(table, box_mode)
    for store in reversed(_OPEN):
        positions = store.rows(identities) if store.settings == settings else None
        if positions is not None:
            return store.array, positions
    store = prepare(table, *settings, cache_dir=cache_dir)
    return store.array, store.rows(identities)


def _fill(table, path, image_size, channels, resize, box_mode):
    """Decode every row into a temporary .npy, renamed into place only when complete."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with naming(tmp):  # a full disk: one line naming the file, and no partial file left (below)
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                              shape=(len(table), image_size, image_size, channels))
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    done = np.zeros(len(table), bool)
    decode = decoder(table, image_size, channels, resize, box_mode)
    # Each row is written at its own position, so arrival order does not matter: no waiting on a slow read.
    batches = (encoded_images(table, deterministic=False)
               .map(lambda row, encoded: (row, decode(row, encoded)), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=False)
               .batch(FILL_BATCH).prefetch(2))
    try:
        try:
            for rows, images in batches:
                rows = rows.numpy()
                array[rows] = images.numpy()
                done[rows] = True
        except tf.errors.OpError as error:
            bad, reason = _first_undecodable(table, decode, done) if "record_file" not in table.columns else (None, None)
            where = f"{bad}: TensorFlow cannot decode it ({reason})" if bad else f"decoding failed: {error.message}"
            raise DataError(f"{where}; remove or convert the file") from None
        array.flush()
        del array
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
