"""Seeded row splits: plain random fractions, or stratified by class (Hotel-ID's 90/10 split),
and a stratified subsample (``data.max_rows``, what smoke runs use on a user's data).

Both return row positions (``table.iloc[...]``), disjoint and covering every row, the same for
the same seed on any machine (NumPy's PCG64 stream).
"""

from typing import Sequence

import numpy as np


def split_rows(num_rows: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Disjoint random index sets with the given fractions; the remainder comes last.

    Example:
        >>> val, train = split_rows(100, [0.15], seed=0)
        >>> len(val), len(train)
        (15, 85)
    """
    order = np.random.default_rng(seed).permutation(num_rows)
    counts = [int(round(f * num_rows)) for f in fractions]
    bounds = np.cumsum([0] + counts)
    parts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return parts + [order[bounds[-1]:]]


def stratified_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` row positions with ``val_fraction`` of every class in val.

    Each class with n rows gives ``round(val_fraction * n)`` rows to val, but always keeps one in
    train (a class seen only at validation cannot be learnt or retrieved) and, when it has at least
    two rows and the fraction is positive, gives at least one to val. Rows with a NaN label stay in
    train. Positions come back sorted.

    Args:
        labels: one label per row (any hashable values; NaN = unknown).
        val_fraction: in [0, 1).
        seed: the split's seed.

    Example:
        >>> train, val = stratified_split([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], 0.25, seed=0)
        >>> len(val)  # one of class 0 (round(1.0)), two of class 1 (round(1.5))
        3
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    values = np.asarray(labels, dtype=object)
    known = np.array([not (isinstance(v, float) and np.isnan(v)) and v is not None for v in values], bool)
    val = []
    # Classes in a fixed (string-sorted) order, so the draw does not depend on the row order of classes.
    for value in sorted(set(values[known]), key=str):
        rows = np.flatnonzero(known & (values == value))
        take = int(round(val_fraction * len(rows)))
        if val_fraction > 0 and len(rows) >= 2:
            take = max(take, 1)
        take = min(take, len(rows) - 1)
        val.extend(rng.permutation(rows)[:take])
    val = np.sort(np.asarray(val, np.int64))
    train = np.setdiff1d(np.arange(len(values)), val)
    return train, val


_NAN_GROUP = "<unknown label>"


def stratified_sample(labels, size: int, seed: int) -> np.ndarray:
    """Sorted positions of ``size`` rows that keep every class's share (all rows when there are fewer).

    Every class keeps at least one row when ``size`` allows (else ``size`` classes, drawn at random,
    keep one each); the rest is shared in proportion to the classes' other rows, largest remainders
    first. NaN labels are one group of their own.

    Example:
        >>> rows = stratified_sample([0] * 90 + [1] * 10, 20, seed=0)
        >>> len(rows), int((np.asarray(rows) >= 90).sum())  # 1 + 1 each, then 18 split 89:9
        (20, 3)
    """
    values = np.empty(len(labels), dtype=object)  # filled, not built, so no value is unpacked
    values[:] = [_NAN_GROUP if isinstance(v, float) and np.isnan(v) else v for v in labels]
    if size >= len(values):
        return np.arange(len(values))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(values == value) for value in sorted(set(values.tolist()), key=str)]
    if size < len(groups):
        take = np.zeros(len(groups), np.int64)
        take[rng.choice(len(groups), size, replace=False)] = 1
    else:
        rest = np.array([len(rows) - 1 for rows in groups], np.float64)
        share = (size - len(groups)) * rest / rest.sum() if rest.sum() else rest
        take = 1 + np.floor(share).astype(np.int64)
        short = size - int(take.sum())
        take[np.argsort(-(share - np.floor(share)), kind="stable")[:short]] += 1
    chosen = [rng.permutation(rows)[:count] for rows, count in zip(groups, take)]
    return np.sort(np.concatenate(chosen))
