"""A CSV of image paths and labels: the layout for any data set with its own split files.

    root/<split>.csv      a path column and one or more label columns (names configurable;
                          empty = missing label, NaN in the Table); paths relative to root

Numeric label columns are kept as they are; text labels (class names) are mapped to 0..K-1 in
sorted order, the names kept in ``<column>_name`` and in ``table.attrs["classes"][column]``.
"""

import os

import numpy as np
import pandas as pd

from keras_fgvc.data.sources.csv_file import check_unique, read_csv
from keras_fgvc.data.sources.paths import contiguous_ids, inside_root
from keras_fgvc.errors import DataError


def has_split(root, split: str) -> bool:
    """Whether ``<root>/<split>.csv`` exists."""
    return os.path.isfile(os.path.join(root, f"{split}.csv"))


def load(root, split="train", path_column="path", label_columns=("label",)):
    """The ``split`` Table from ``<root>/<split>.csv``: absolute ``path`` plus the label columns.

    Raises DataError naming the file, column or row: missing file or columns, an empty table, an
    empty path, a path outside ``root``, a missing image, or an image listed twice.

    Example:
        >>> table = load("/data/birds", "train", label_columns=["species"])  # doctest: +SKIP
    """
    csv_path = os.path.join(root, f"{split}.csv")
    table = read_csv(csv_path, [path_column, *label_columns], f"expected <split>.csv with a '{path_column}' column")
    if table.empty:
        raise DataError(f"{csv_path}: no rows (only a header)")
    paths = []
    for row, value in enumerate(table[path_column]):
        where = f"{csv_path}: row {row + 2}"
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: column '{path_column}' is empty")
        path = inside_root(root, value, where)
        if not os.path.isfile(path):
            raise DataError(f"{where}: image {path} not found")
        paths.append(path)
    table["path"] = paths
    check_unique(table, "path", csv_path)  # after resolving: "a.jpg" and "./a.jpg" are one image
    classes = {}
    for column in label_columns:
        values = table[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if (numeric.notna() | values.isna()).all():
            table[column] = numeric.astype("float64")
            continue
        names, index = contiguous_ids(values.dropna().astype(str))
        table[f"{column}_name"] = values
        table[column] = [np.nan if pd.isna(v) else float(index[str(v)]) for v in values]
        classes[column] = names
    table.attrs["classes"] = classes
    return table
