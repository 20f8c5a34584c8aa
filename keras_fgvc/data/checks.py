"""Check every image of a Table once, up front, before any epoch: bad files are skipped and reported.

TensorFlow's own answer (``ignore_errors``) drops bad elements without a word (tensorflow#41208) and
an undecodable file otherwise kills a run half-way through an epoch. So each file is opened with
PIL in a thread pool (decoding releases the GIL): missing, zero-byte, non-image, unsupported and
truncated files are reported by path; EXIF orientation is read here because TensorFlow ignores it.
Results are cached by (path, size, mtime), so a 45k-image data set is checked once, not every run.
"""

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from keras_fgvc.errors import DataError
from keras_fgvc.tracking.run_dir import atomic_write_text

# What tf.io.decode_image reads (MPO: multi-picture JPEGs from phone cameras, decoded as JPEG).
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP")
# PIL refuses more than twice its default MAX_IMAGE_PIXELS (~179M pixels) as a decompression bomb;
# a 10,000 x 10,000 photo (100M) is decoded, with its warning silenced.
CACHE_FILE = "image_checks.json"
BAD_FILES = "bad_files.txt"
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/keras_fgvc`` (``~/.cache/keras_fgvc``): caches shared by every run."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_fgvc")


def inspect(path: str) -> tuple[int, str]:
    """``(EXIF orientation 1-8, reason)`` for one file; reason is "" for a good image."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return 1, "empty file (0 bytes)"
    except OSError:
        return 1, "file not found"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format not in DECODABLE_FORMATS:
                    return 1, f"unsupported image format {image.format}"
                orientation = int(image.getexif().get(EXIF_ORIENTATION, 1))
                if image.format in ("JPEG", "MPO"):
                    image.draft(image.mode, (64, 64))  # DCT-domain downscale: reads every byte, decodes 1/8
                image.load()
    except UnidentifiedImageError:
        return 1, "not an image"
    except Image.DecompressionBombError as error:
        return 1, f"too large to decode ({error})"
    except (OSError, SyntaxError, ValueError) as error:  # PIL's truncated / corrupt data errors
        return 1, f"unreadable image ({error})"
    return orientation if 1 <= orientation <= 8 else 1, ""


def _load_cache(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs a re-check


def _file_key(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def check_images(table, cache_dir: str | None = None, strict: bool = False, workers: int = 16):
    """The Table's good rows (with an ``orientation`` column) and the bad files, in table order.

    Args:
        table: a Table with an absolute ``path`` column. Rows read from TFRecords (``record_file``
            column) are not files and pass unchecked (they were checked when written).
        cache_dir: where the per-file results are kept (``default_cache_dir()`` when None).
        strict: raise DataError naming the first bad file instead of skipping it.
        workers: threads opening files in parallel.
    Returns:
        ``(good_table, bad_files)``: the rows whose image is readable, index reset, and a list of
        ``BadFile(path, reason)``.

    Example:
        >>> good, bad = check_images(load("imagefolder", "/data/flowers"))  # doctest: +SKIP
        >>> print(summary(bad, total=len(good) + len(bad)))  # doctest: +SKIP
    """
    if "record_file" in table.columns:
        return table.assign(orientation=1).reset_index(drop=True), []
    cache_path = os.path.join(cache_dir or default_cache_dir(), CACHE_FILE)
    cache = _load_cache(cache_path)
    paths = table["path"].astype(str).tolist()
    keys = [_file_key(p) for p in paths]
    todo = sorted({p for p, k in zip(paths, keys) if k is None or cache.get(p, [None])[:2] != k})
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(zip(todo, pool.map(inspect, todo)))
    for path in todo:
        key = _file_key(path)
        if key is not None:
            cache[path] = [*key, *results[path]]
    if todo:
        atomic_write_text(cache_path, json.dumps(cache))
    orientation = np.ones(len(paths), np.int32)
    good = np.ones(len(paths), bool)
    bad = []
    for row, path in enumerate(paths):
        angle, reason = results[path] if path in results else cache[path][2:]
        if reason:
            if strict:
                raise DataError(f"{path}: {reason} (data.strict=true stops at the first bad image)")
            good[row] = False
            bad.append(BadFile(path, reason))
        orientation[row] = angle
    checked = table.assign(orientation=orientation)[good].reset_index(drop=True)
    checked.attrs = dict(table.attrs)
    return checked, bad


def write_bad_files(bad: list, run_dir: str) -> str | None:
    """``<run_dir>/bad_files.txt`` (one ``path<TAB>reason`` per line); None when there are none."""
    if not bad:
        return None
    path = os.path.join(run_dir, BAD_FILES)
    atomic_write_text(path, "".join(f"{b.path}\t{b.reason}\n" for b in bad))
    return path


def summary(bad: list, total: int) -> str:
    """One line for the printed run summary."""
    if not bad:
        return f"images: {total} checked, all readable"
    return f"images: {len(bad)} of {total} unreadable, skipped (listed in {BAD_FILES}); first: {bad[0].path}: {bad[0].reason}"
