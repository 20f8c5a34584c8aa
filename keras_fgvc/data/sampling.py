"""Class-balanced P x K batches for metric-learning losses.

Batch-hard triplet loss needs a positive for every anchor and center loss needs several images of
a class per update, so a batch holds ``P = classes_per_batch`` distinct classes with
``K = images_per_class`` rows each. Batch ``b`` is rows ``[b*P*K, (b+1)*P*K)`` of the flat order:
P consecutive blocks of K rows, one class per block.

How rows are drawn (exact properties, pinned by tests):
    classes  walk shuffled passes over the class list, P distinct at a time. Where a batch straddles
             two passes it takes the rest of the old pass and the first classes of the new pass
             that are not already in the batch; the skipped ones stay at the front. Every pass is
             used up before the next begins, so in the first ``M`` class slots of an epoch every
             class appears ``floor(M / C)`` or ``ceil(M / C)`` times (C classes, M = batches * P).
    images   the same walk inside each class, so a class's images are used in turn (counts differ
             by at most one). A class with fewer than K images is sampled with replacement: each
             of its images ``K // n`` times plus ``K % n`` distinct ones from its walk.
    unknown  rows whose label is NaN/None are never drawn.
    epochs   one epoch is ``max(1, labelled rows // (P*K))`` batches. Epoch ``e`` is
             ``pk_batches(labels, P, K, seed + e)``: seeded with ``seed + e``, reproducible alone.

Class balance means small-class images are seen more often than large-class images per epoch;
that is the point for triplet mining, and why this sampler is not the default for softmax stages.
"""

import itertools

import numpy as np
import pandas as pd
import tensorflow as tf


class _Walk:
    """Draws from shuffled passes over ``items``: distinct within one draw, balanced across draws."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator):
        self._items = items
        self._rng = rng
        self._queue = items[:0]  # rest of the current pass; always distinct items

    def distinct(self, n: int) -> np.ndarray:
        """``n <= len(items)`` distinct items, the next ones of the walk."""
        if len(self._queue) >= n:
            taken, self._queue = self._queue[:n], self._queue[n:]
            return taken
        fresh = self._rng.permutation(self._items)
        # Fill from the new pass, skipping what the old pass's tail already put in this draw.
        fill = np.flatnonzero(~np.isin(fresh, self._queue))[: n - len(self._queue)]
        taken = np.concatenate([self._queue, fresh[fill]])
        self._queue = np.delete(fresh, fill)
        return taken

    def with_replacement(self, n: int) -> np.ndarray:
        """``n`` items; when ``n`` exceeds the pool every item comes ``n // len`` times first."""
        repeats, rest = divmod(n, len(self._items))
        if repeats == 0:
            return self.distinct(n)
        return np.concatenate([np.tile(self._items, repeats), self.distinct(rest)])


def _class_rows(labels) -> list[np.ndarray]:
    """Row indices of each labelled class (any hashable labels; NaN/None are unknown)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(labels, dtype=object).ravel()), use_na_sentinel=True)
    labelled = np.flatnonzero(codes >= 0)
    order = labelled[np.argsort(codes[labelled], kind="stable")]
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds) if len(order) else []


def _check(groups, classes_per_batch: int, images_per_class: int):
    for name, value in (("classes_per_batch", classes_per_batch), ("images_per_class", images_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not groups:
        raise ValueError("P x K sampling needs labelled rows, but every label is NaN/None (or there are no rows)")
    if classes_per_batch > len(groups):
        raise ValueError(
            f"classes_per_batch={classes_per_batch} is more than the {len(groups)} classes with labelled rows; "
            f"a P x K batch needs P distinct classes, so lower classes_per_batch to at most {len(groups)}"
        )


def _sample(groups, classes_per_batch: int, images_per_class: int, seed: int, num_batches: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = _Walk(np.arange(len(groups)), rng)
    images = [_Walk(rows, rng) for rows in groups]
    batches = np.empty((num_batches, classes_per_batch * images_per_class), dtype=np.int64)
    for b in range(num_batches):
        blocks = [images[c].with_replacement(images_per_class) for c in classes.distinct(classes_per_batch)]
        batches[b] = np.concatenate(blocks)
    return batches


def _epoch_batches(groups, classes_per_batch: int, images_per_class: int) -> int:
    return max(1, sum(len(rows) for rows in groups) // (classes_per_batch * images_per_class))


def pk_batches(labels, classes_per_batch: int, images_per_class: int, seed: int, num_batches=None) -> np.ndarray:
    """Row indices of class-balanced batches: P distinct classes, K rows of each.

    Args:
        labels: one label per table row (e.g. ``table["label"]``); NaN/None rows are never drawn.
        classes_per_batch: P, distinct classes per batch (at most the number of labelled classes).
        images_per_class: K, rows per class (batch-hard triplet loss needs K >= 2); classes with
            fewer than K rows repeat rows (sampled with replacement, see the module docstring).
        seed: all randomness; the same arguments give the same batches.
        num_batches: batches to draw; None: one epoch, ``max(1, labelled rows // (P*K))``.

    Returns:
        int64 array [num_batches, P*K]; row ``b`` holds P blocks of K indices, one class per block.

    Raises:
        ValueError: P or K not a positive integer, P above the number of labelled classes, no
            labelled rows, or num_batches below 1.

    Example:
        >>> pk_batches([0, 0, 1, 1, 2, 2, float("nan")], classes_per_batch=2, images_per_class=2, seed=0).shape
        (1, 4)
    """
    groups = _class_rows(labels)
    _check(groups, classes_per_batch, images_per_class)
    if num_batches is None:
        num_batches = _epoch_batches(groups, classes_per_batch, images_per_class)
    if isinstance(num_batches, bool) or not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer or None, got {num_batches!r}")
    return _sample(groups, classes_per_batch, images_per_class, seed, int(num_batches))


def pk_dataset(labels, classes_per_batch: int, images_per_class: int, seed: int) -> tf.data.Dataset:
    """One epoch of P x K batches as a flat dataset of int64 row indices, reshuffled every epoch.

    Batch ``b`` is elements ``[b*P*K, (b+1)*P*K)``, so ``.batch(P*K)`` (after mapping rows to
    examples, never after a shuffle) restores the batches. The ``e``-th iteration over the dataset
    (a new iterator, as Keras makes each epoch, or a ``repeat()``) yields
    ``pk_batches(labels, P, K, seed + e).ravel()``; the epoch counter lives with this dataset object
    in this Python process, so a new ``pk_dataset`` with the same seed replays the same epochs.
    Arguments are checked here, not on first iteration.

    Args:
        labels: one label per table row; NaN/None rows are never drawn.
        classes_per_batch: P.
        images_per_class: K.
        seed: epoch ``e`` uses ``seed + e``.

    Returns:
        a ``tf.data.Dataset`` of int64 scalars with known cardinality ``num_batches * P * K``.

    Example:
        >>> rows = pk_dataset(table["label"], 16, 4, seed=0)  # doctest: +SKIP
        >>> ds = rows.map(lambda row: read_example(row)).batch(64, drop_remainder=True)  # doctest: +SKIP
    """
    groups = _class_rows(labels)
    _check(groups, classes_per_batch, images_per_class)
    num_batches = _epoch_batches(groups, classes_per_batch, images_per_class)
    size = num_batches * classes_per_batch * images_per_class
    epochs = itertools.count()  # next() is atomic under the GIL, so concurrent iterators get distinct epochs

    def next_epoch():
        return _sample(groups, classes_per_batch, images_per_class, seed + next(epochs), num_batches).ravel()

    def epoch_rows(_):
        # stateful: tf.data must call this once per iteration, never cache or fold it.
        rows = tf.numpy_function(next_epoch, [], tf.int64, stateful=True)
        return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(rows, [size]))

    rows = tf.data.Dataset.range(1).flat_map(epoch_rows)
    return rows.apply(tf.data.experimental.assert_cardinality(size))
