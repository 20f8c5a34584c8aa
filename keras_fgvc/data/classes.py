"""The class mapping of a run: index 0..K-1 the model predicts -> the data set's own class id or name.

Sources map class ids to contiguous indices (``table.attrs["classes"]``); the mapping is saved as
``classes.json`` in the run's stage folder and inside each export, so predictions and submissions
give the original ids (a Hotel-ID hotel id, a Stanford Cars class name, a VIPriors wnid).
"""

import json
import os

from keras_fgvc.errors import DataError
from keras_fgvc.tracking.run_dir import atomic_write_text

FILE = "classes.json"


def of_table(table) -> list | None:
    """The table's ordered classes (index -> original), or None when the source has no mapping."""
    classes = table.attrs.get("classes")
    return list(classes) if isinstance(classes, (list, tuple)) else None


def save(classes, folder: str) -> str:
    """Write ``<folder>/classes.json`` (a JSON list; ids keep their type) atomically."""
    path = os.path.join(folder, FILE)
    atomic_write_text(path, json.dumps([_plain(c) for c in classes]) + "\n")
    return path


def load(folder: str) -> list:
    """The mapping saved by ``save``; DataError naming the file when it is missing or not a list."""
    path = os.path.join(folder, FILE)
    try:
        with open(path) as f:
            classes = json.load(f)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the class mapping ({error})") from None
    if not isinstance(classes, list):
        raise DataError(f"{path}: expected a JSON list of class ids")
    return classes


def to_original(indices, classes) -> list:
    """Original class ids of predicted indices, e.g. ``to_original([2, 0], [11, 42, 7]) == [7, 11]``."""
    return [classes[int(i)] for i in indices]


def _plain(value):
    """NumPy scalars as Python values, so ids round-trip through JSON with their type."""
    return value.item() if hasattr(value, "item") else value
