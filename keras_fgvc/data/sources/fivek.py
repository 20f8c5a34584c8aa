"""Zalo AI 2021 5K compliance layout.

    root/train_meta.csv          image_id,fname,mask,distancing,5k   (labels 0/1, empty = missing)
    root/images/<fname>
    root/public_test_meta.csv    image_id,fname                      (optional)
    root/truth.csv               all labels, for the demo data only  (optional)
"""

import os

import numpy as np
import pandas as pd

from keras_fgvc.data.sources.csv_file import check_unique, read_csv
from keras_fgvc.data.sources.paths import inside_root
from keras_fgvc.errors import DataError, plain

LABELS = ("mask", "distancing", "5k")
META_FILES = {"train": "train_meta.csv", "test": "public_test_meta.csv", "truth": "truth.csv"}


def load(root, split="train"):
    """The ``split`` table ("train", "test" or "truth") with an absolute ``path`` column.

    Raises DataError naming the file, column or row when the layout is wrong.
    """
    if split not in META_FILES:
        raise DataError(f"fivek has splits {', '.join(META_FILES)}; got '{split}'")
    csv_path = os.path.join(root, META_FILES[split])
    required = ["image_id", "fname"] + (list(LABELS) if split != "test" else [])
    table = read_csv(csv_path, required, f"expected the Zalo 5K layout: {META_FILES[split]} + images/")
    check_unique(table, "image_id", csv_path)
    for label in LABELS if split != "test" else ():
        values = pd.to_numeric(table[label], errors="coerce")
        bad = table[label].notna() & ~values.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{csv_path}: row {row + 2}: column '{label}' must be 0, 1 or empty, got {plain(table[label].iloc[row])!r}"
            )
        table[label] = values.astype("float32")
    image_dir = os.path.join(os.path.abspath(root), "images")
    table["path"] = [inside_root(image_dir, str(name), f"{csv_path}: row {row + 2}")
                     for row, name in enumerate(table["fname"])]
    if split != "truth":
        exists = np.array([os.path.isfile(p) for p in table["path"]])
        if not exists.all():
            row = int(np.flatnonzero(~exists)[0])
            raise DataError(
                f"{csv_path}: row {row + 2}: image {table['path'].iloc[row]} not found "
                f"({int((~exists).sum())} of {len(table)} images missing)"
            )
    return table


def load_truth(root):
    """The hidden-label table of the demo data, or None for real data (which has none)."""
    if not os.path.isfile(os.path.join(root, META_FILES["truth"])):
        return None
    return load(root, split="truth")
