"""``task=to_tfrecord``: the configured data set as TFRecord shards (``data/tfrecord.py``).

Writes the ``train`` split, and ``val``/``test`` where the source has them, into
``data.tfrecord_dir`` (default ``<run_dir>/tfrecords``; local or ``gs://``), ``data.tfrecord_shards``
shards per split. Train from them with ``data.format=tfrecord data.root=<that folder>``.
Existing shards are replaced only with ``export.overwrite=true``, checked for every split
before anything is written.
"""

import os

from keras_fgvc.data import tfrecord
from keras_fgvc.data.prepare import source_table
from keras_fgvc.errors import DataError, UserError

SPLITS = ("train", "val", "test")


def data_root(cfg) -> str:
    """``data.root``, or the pipeline driver's demo data (generated on first use) when it has one."""
    from keras_fgvc.pipelines import import_driver

    if cfg.data.root:
        return cfg.data.root
    driver = import_driver(cfg.pipeline)
    if driver is None or not hasattr(driver, "data_root"):
        raise UserError(f"task=to_tfrecord: set data.root=<folder> (pipeline '{cfg.pipeline}' has no demo data)")
    return driver.data_root(cfg)


def _same_folder(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def run(cfg) -> dict[str, list[str]]:
    """Write the data set's splits as shards; returns {split: shard paths}.

    Args:
        cfg: the run's Config; reads ``data.format``, ``data.root`` (empty: the pipeline's demo
            data), ``data.tfrecord_dir``, ``data.tfrecord_shards`` and ``export.overwrite``.

    Example:
        >>> run(compose(["task=to_tfrecord", "data.format=imagefolder", "data.root=/data/flowers"]))  # doctest: +SKIP
        {'train': ['runs/fivek/default/tfrecords/train-00000-of-00008.tfrecord', ...]}
    """
    if cfg.data.tfrecord_shards < 1:
        raise UserError(f"data.tfrecord_shards must be at least 1, got {cfg.data.tfrecord_shards}")
    root = data_root(cfg)
    out_dir = cfg.data.tfrecord_dir or os.path.join(cfg.run_dir, "tfrecords")
    if cfg.data.format == "tfrecord" and _same_folder(root, out_dir):
        raise UserError(f"data.tfrecord_dir {out_dir} is the folder being read; choose another one")
    tables = {"train": source_table(cfg, root, "train")}
    for split in SPLITS[1:]:
        try:
            tables[split] = source_table(cfg, root, split)
        except DataError as error:
            # Most data sets lack some split; the reason is printed so a broken one is noticed.
            print(f"no {split} split written: {error}")
    # Every split is checked first: a refusal must not come after another split was replaced.
    for split in tables:
        tfrecord.check_writable(out_dir, split, cfg.export.overwrite, switch="export.overwrite=true")
    written = {}
    for split, table in tables.items():
        written[split] = tfrecord.write(
            table, out_dir, cfg.data.tfrecord_shards, split, root=root, overwrite=cfg.export.overwrite
        )
        print(f"wrote {split}: {len(table)} rows in {len(written[split])} shard(s) under {out_dir}")
    return written
