"""Per-channel mean/std of a training set, measured on the pixels the model sees, and the data
fingerprint that keys this and other on-disk caches.

The statistics are computed on ``decode.model_pixels`` at the training ``image_size`` with the
pipeline's own per-row decoder (``pixel_cache.decoder``: EXIF orientation, object box, resize
policy), not on the original files: normalising with statistics of other pixels than the network
receives shifts every input a little. Computing them streams the images through tf.data once
(Stanford Cars: 8,144 train images; Hotel-ID: ~45k), so they are cached as JSON keyed by the data
fingerprint plus every setting that changes the pixels.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from keras_fgvc.data import pixel_cache
from keras_fgvc.data.tfrecord import encoded_images
from keras_fgvc.errors import DataError
from keras_fgvc.tracking.run_dir import atomic_write_text

# What mean_std computes on the Stanford Cars training split at 227 px (the thesis' best recipe,
# docs/SYSTEMS.md section 2): mean [0.4707, 0.4602, 0.4550], std [0.2594, 0.2585, 0.2635].
# The thesis measured them with its own (PIL) resize, so the fourth decimal may differ here.
STANFORD_CARS_MEAN = (0.4707, 0.4602, 0.4550)
STANFORD_CARS_STD = (0.2594, 0.2585, 0.2635)

_BATCH = 64  # images summed per step: large enough to amortise tf.data overhead, ~40 MB of float64 at 227 px


def _plain(value):
    """JSON stand-in for NumPy scalars (``np.int64(224)`` must key like ``224``) and anything else."""
    return value.item() if isinstance(value, np.generic) else repr(value)


def _file_identities(table) -> list[tuple]:
    """(path, size, mtime ns) per row; for TFRecord Tables (shard, record index, shard size, shard mtime)."""
    if "record_file" in table.columns:
        shards = {}
        identities = []
        for shard, index in zip(table["record_file"].astype(str), table["record_index"].astype("int64")):
            if shard not in shards:
                try:
                    info = tf.io.gfile.stat(shard)  # gs:// shards too
                except tf.errors.NotFoundError:
                    raise DataError(f"{shard}: TFRecord shard not found (column 'record_file')") from None
                shards[shard] = (info.length, info.mtime_nsec)
            identities.append((shard, int(index), *shards[shard]))
        return identities
    identities = []
    for row, path in enumerate(table["path"].astype(str)):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise DataError(f"{path}: image file not found (table row {row}, column 'path')") from None
        identities.append((path, info.st_size, info.st_mtime_ns))
    return identities


def fingerprint(table, *extra) -> str:
    """A short hash naming a table's image files as they are on disk now, plus ``extra`` settings.

    It hashes the sorted (path, size in bytes, mtime in ns) triples, so row order does not matter
    while replacing, resizing or touching any file gives a new key. A file rewritten with the same
    size inside the file system's mtime resolution keeps its key (the price of not reading every
    byte of 45k images). Duplicate paths count once per row, as they do in the statistics. A
    TFRecord Table (``record_file``/``record_index``) is keyed by its records and shard files.

    Args:
        table: a Table (pandas frame with an absolute ``path`` column).
        *extra: settings the cached value depends on (image size, channels, a cache kind...);
            anything JSON-serialisable, NumPy scalars count as their Python value.

    Returns:
        32 hex characters.

    Raises:
        DataError: a path (or shard) does not exist (the message names the row and the file).

    Example:
        >>> key = fingerprint(table, "embeddings", 227, 3)  # doctest: +SKIP
        >>> cache = os.path.join(cache_dir, f"embeddings-{key}.npy")  # doctest: +SKIP
    """
    digest = hashlib.sha256()
    for identity in sorted(_file_identities(table)):
        # NUL cannot occur in a path, so fields cannot run into each other.
        digest.update("\0".join(map(str, identity)).encode() + b"\n")
    digest.update(json.dumps(list(extra), default=_plain).encode())
    return digest.hexdigest()[:32]


def _row_settings(table, box_mode: str) -> str:
    """Digest of the per-row decode inputs (orientation, boxes) in path order, so row order stays out of the key."""
    order = np.argsort(table["path"].astype(str).to_numpy(), kind="stable")
    digest = hashlib.sha256()
    for values in pixel_cache.row_columns(table, box_mode).values():
        digest.update(np.ascontiguousarray(np.asarray(values)[order]).tobytes())
    return digest.hexdigest()


def _compute_mean_std(table, image_size: int, channels: int, resize: str, box_mode: str):
    """Stream the table's images through tf.data; per-channel (mean, population std) in [0, 1]."""
    decode = pixel_cache.decoder(table, image_size, channels, resize, box_mode)
    images = encoded_images(table, deterministic=False).map(
        decode,
        num_parallel_calls=tf.data.AUTOTUNE,
        # Sums of integers are exact (below), so arrival order cannot change the result.
        deterministic=False,
    )

    def batch_sums(batch):
        # model_pixels are integers 0..255, so float64 sums of x and x^2 stay exact integers up to
        # 2^53 (~1.4e11 pixels per channel: 45k images at 1700 px), and var = E[x^2] - E[x]^2 has
        # no cancellation error worth naming.
        values = tf.cast(batch, tf.float64)
        return tf.reduce_sum(values, axis=[0, 1, 2]), tf.reduce_sum(tf.square(values), axis=[0, 1, 2])

    sums = images.batch(_BATCH).map(batch_sums, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    zeros = tf.zeros([channels], tf.float64)
    total, total_squares = sums.reduce((zeros, zeros), lambda acc, s: (acc[0] + s[0], acc[1] + s[1]))
    count = float(len(table)) * image_size * image_size
    mean = total.numpy() / count
    variance = np.maximum(total_squares.numpy() / count - mean**2, 0.0)
    return mean / 255.0, np.sqrt(variance) / 255.0


def _read_cache(path: str, channels: int):
    """(mean, std) from a cache file, or None when it is missing or not a valid entry."""
    try:
        with open(path) as f:
            entry = json.load(f)
        mean, std = np.asarray(entry["mean"], np.float64), np.asarray(entry["std"], np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable entry is recomputed and rewritten, never trusted
    if mean.shape != (channels,) or std.shape != (channels,):
        return None
    return mean, std


def mean_std(table, image_size: int, channels: int = 3, cache_dir=None, resize: str = "squash",
             box_mode: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std, in [0, 1] units, of the model pixels of ``table``'s images.

    Every row counts (pass the training table: statistics of validation or test images leak them
    into the model). Each image contributes ``image_size**2`` pixels, as in the batches the model
    sees, decoded exactly as ``pipeline.build`` decodes them (same ``resize``/``box_mode``, the
    table's ``orientation`` column when it has one).

    Args:
        table: a Table (pandas frame with an absolute ``path`` column, or a TFRecord Table); labels are not read.
        image_size: the training resolution; pixels are ``decode.model_pixels`` at this size.
        channels: 3 (RGB) or 1 (greyscale, as ``decode.decode_image`` converts).
        cache_dir: directory for ``mean_std-<key>.json``; None computes every time. The key is
            ``fingerprint`` of the files (path, size, mtime) plus ``image_size``, ``channels``,
            ``resize``, ``box_mode`` and the per-row orientation/boxes, so a changed file or
            setting is recomputed. The file is written atomically (temp + os.replace).
        resize: ``decode.RESIZE_POLICIES`` (the pipeline's ``PipelineSpec.resize``).
        box_mode: ``decode.BOX_MODES`` (the pipeline's ``PipelineSpec.box_mode``).

    Returns:
        (mean, std): float64 arrays of shape [channels].

    Raises:
        DataError: the table is empty or a file is missing.

    Example:
        >>> mean, std = mean_std(train_table, 227, cache_dir="runs/cache")  # doctest: +SKIP
        >>> normalize = keras.layers.Normalization(mean=mean * 255, variance=(std * 255) ** 2)  # doctest: +SKIP
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if len(table) == 0:
        raise DataError("mean_std: the table has no rows (no images to measure)")
    image_size, channels = int(image_size), int(channels)
    cache_path = None
    if cache_dir is not None:
        key = fingerprint(table, image_size, channels, resize, box_mode, _row_settings(table, box_mode))
        cache_path = os.path.join(cache_dir, f"mean_std-{key}.json")
        cached = _read_cache(cache_path, channels)
        if cached is not None:
            return cached
    mean, std = _compute_mean_std(table, image_size, channels, resize, box_mode)
    if cache_path is not None:
        entry = {"mean": mean.tolist(), "std": std.tolist(), "image_size": image_size, "channels": channels,
                 "resize": resize, "box_mode": box_mode, "num_images": len(table)}
        # json writes floats with repr, so a cache hit returns bit-identical values.
        atomic_write_text(cache_path, json.dumps(entry, indent=2) + "\n")
    return mean, std
