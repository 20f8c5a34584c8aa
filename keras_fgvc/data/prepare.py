"""What every driver does to its tables before training: cut them to ``data.max_rows`` (smoke
runs), check each image once, report the bad ones, and decode the rest once into the shared
pixel cache.

Wiring only; the work is in ``data.checks`` and ``data.pixel_cache``.
"""

import numpy as np

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
        ``images_checked``, ``bad_files`` and, when there are any, ``bad_files_list``.

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
    if listed:
        info["bad_files_list"] = listed
    return checked, info


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
