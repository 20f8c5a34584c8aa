"""What every driver does to its tables before training: cut them to ``data.max_rows`` (smoke
runs), check each image once, report the bad ones, keep track of the test rows that check drops
(``SubmissionRows``: a challenge wants an answer for each of them too), and decode the rest once
into the shared pixel cache.

Wiring only; the work is in ``data.checks`` and ``data.pixel_cache``.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keras_fgvc.data import checks, pixel_cache
from keras_fgvc.errors import DataError


def limit_rows(cfg, tables: dict, label: str = "label") -> dict:
    """``tables`` with each cut to ``data.max_rows`` rows (0: unchanged), stratified by ``label``
    (seeded random rows when a table has no such column); prints what each cut kept."""
    from keras_fgvc.data.splits import stratified_sample

    limit, limited = cfg.data.max_rows, {}
    for name, table in tables.items():
        if not limit or table is None or len(table) <= limit:
            limited[name] = table
            continue
        labels = table[label].to_numpy() if label in table.columns else np.zeros(len(table))
        limited[name] = table.iloc[stratified_sample(labels, limit, cfg.seed)].reset_index(drop=True)
        limited[name].attrs = dict(table.attrs)
        print(f"data.max_rows={limit}: {name} uses {len(limited[name])} of {len(table)} rows "
              f"(stratified by '{label}', seed {cfg.seed})")
    return limited


def check_tables(cfg, tables: dict) -> tuple[dict, dict]:
    """The run's tables with unreadable images removed, and what was found.

    Bad files of every table go to ``<run_dir>/bad_files.txt`` (path and reason) and one summary
    line is printed; ``data.strict=true`` raises on the first instead.

    Args:
        cfg: the run config (``data.cache_dir``, ``data.strict``, ``run_dir``).
        tables: {name: Table or None}.
    Returns:
        ``({name: checked Table or None}, info)`` where info (for metrics.json) holds
        ``images_checked``, ``bad_files``, ``test_unreadable`` when there is a ``test`` table (its
        rows dropped here: ``submission_rows`` gives them to the driver) and, when there are bad files,
        ``bad_files_list``.

    Example:
        >>> (train,), info = check_tables(cfg, {"train": table}).values()  # doctest: +SKIP
    """
    checked, bad = {}, []
    for name, table in tables.items():
        if table is None:
            checked[name] = None
            continue
        checked[name], found = checks.check_images(table, cfg.data.cache_dir, cfg.data.strict)
        bad += found
    total = sum(len(t) for t in tables.values() if t is not None)
    listed = checks.write_bad_files(bad, cfg.run_dir)
    print(checks.summary(bad, total))
    for name, table in tables.items():
        if table is not None and len(table) and not len(checked[name]):
            first = next(b for b in bad if b.path in set(table["path"]))
            raise DataError(f"{name}: none of its {len(table)} images is readable (first: {first.path}: "
                            f"{first.reason}; all in {listed})")
    info = {"images_checked": total, "bad_files": len(bad)}
    if tables.get("test") is not None:
        info["test_unreadable"] = len(tables["test"]) - len(checked["test"])
    if listed:
        info["bad_files_list"] = listed
    return checked, info


@dataclass(frozen=True)
class SubmissionRows:
    """Every row of a test table as the driver had it before ``check_tables``, which of them were
    kept (their image is readable), and the kept rows as ``check_tables`` returned them (the
    table to predict on: it carries the checks' ``orientation``).

    A challenge scores one answer per test image, so a submission cannot just drop the rows whose
    image is unreadable: the model answers the readable rows, a prior (the driver's documented
    best guess without the image) answers the others, and ``answers`` puts both back in table order.

    Example:
        >>> rows = submission_rows(tables, checked)  # doctest: +SKIP
        >>> rows.answers(np.array([[0.9, 0.1], [0.2, 0.8]]), prior=[0.6, 0.4])  # doctest: +SKIP
        array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    """

    table: pd.DataFrame  # index reset
    readable: np.ndarray  # bool, one per row of table
    kept: pd.DataFrame  # check_tables' table: the readable rows, in table order, index reset

    @property
    def unreadable(self) -> pd.DataFrame:
        """The rows whose image check_tables dropped, in table order (index reset)."""
        return self.table[~self.readable].reset_index(drop=True)

    def answers(self, predicted, prior) -> np.ndarray:
        """``predicted`` (one row per readable row, in their order) with ``prior`` on every
        unreadable row, one row per row of ``table``, in its order.

        Args:
            predicted: [readable rows, ...] array (probabilities, scores, labels).
            prior: one row's answer, broadcast to each unreadable row (in predicted's dtype, so
                the predicted rows stay exactly as they were).
        """
        predicted = np.asarray(predicted)
        if len(predicted) != len(self.kept):
            raise ValueError(f"{len(predicted)} predicted rows for {len(self.kept)} readable test rows")
        every = np.empty((len(self.table), *predicted.shape[1:]), predicted.dtype)
        every[self.readable] = predicted
        every[~self.readable] = np.asarray(prior).astype(predicted.dtype)
        return every


def submission_rows(tables: dict, checked: dict, name: str = "test") -> SubmissionRows | None:
    """``SubmissionRows`` of ``tables[name]`` (as given to ``check_tables``) against
    ``checked[name]`` (what it returned); None when there is no such table.

    Example:
        >>> checked, info = check_tables(cfg, tables)  # doctest: +SKIP
        >>> test = submission_rows(tables, checked)  # doctest: +SKIP
    """
    if tables.get(name) is None:
        return None
    table, kept = tables[name].reset_index(drop=True), checked[name].reset_index(drop=True)
    readable = table["path"].isin(set(kept["path"])).to_numpy()
    # check_images keeps rows in table order and drops whole paths, so the kept rows line up
    if int(readable.sum()) != len(kept):
        raise ValueError(f"{name}: {len(kept)} checked rows, {int(readable.sum())} readable in the table")
    return SubmissionRows(table, readable, kept)


def class_prior(labels, num_classes: int) -> np.ndarray:
    """Each class's share of ``labels`` (integers; NaN rows are left out): the probabilities a
    model that cannot see the image should give it, when test images come from the classes as
    often as the training images do.

    Example:
        >>> class_prior([0, 2, 2, 1], num_classes=4).tolist()
        [0.25, 0.25, 0.5, 0.0]
    """
    labels = pd.Series(np.asarray(labels, np.float64)).dropna().to_numpy().astype(np.int64)
    if not len(labels):
        raise ValueError("a class prior needs at least one labelled row")
    return np.bincount(labels, minlength=num_classes).astype(np.float64) / len(labels)


def decode_once(cfg, table):
    """Decode ``table`` into the pixel cache now (no-op with ``data.cache=false``), so every stage
    and prediction on a subset of it reads the same decoded pixels (``model.img_channels`` of them)."""
    if cfg.data.cache and len(table):
        pixel_cache.prepare(table, cfg.data.image_size, cfg.model.img_channels, cfg.data.resize, cfg.data.box_mode,
                            cfg.data.cache_dir)


def source_table(cfg, root: str, split: str = "train"):
    """The ``split`` Table of the data set at ``root`` in ``data.format`` with ``data.source_options``."""
    from keras_fgvc.data.sources import load

    return load(cfg.data.format, root, split, **dict(cfg.data.source_options))
