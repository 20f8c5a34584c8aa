"""Data sources: each reads one on-disk layout into a Table (a pandas DataFrame).

A Table has an absolute ``path`` column, one column per label (NaN where missing) and whatever
ids the layout carries. Sources only read and check; they never augment or decode pixels.
"""

import importlib

# format name -> module in this package exposing load(root, split="train")
FORMATS = {
    "fivek": "keras_fgvc.data.sources.fivek",
    "imagefolder": "keras_fgvc.data.sources.imagefolder",
    "csv": "keras_fgvc.data.sources.csv_table",
}


def load(format: str, root: str, split: str = "train", **options):
    """Read the ``split`` table of a data set in layout ``format`` under ``root``.

    Example:
        >>> table = load("fivek", "/data/zalo5k")  # doctest: +SKIP
        >>> table = load("csv", "/data/birds", "val", label_columns=["species"])  # doctest: +SKIP
    """
    from keras_fgvc.errors import DataError

    if format not in FORMATS:
        raise DataError(f"unknown data format '{format}'; known: {', '.join(sorted(FORMATS))}")
    return importlib.import_module(FORMATS[format]).load(root, split=split, **options)
