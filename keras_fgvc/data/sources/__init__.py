"""Data sources: each reads one on-disk layout into a Table (a pandas DataFrame).

A Table has an absolute ``path`` column, one column per label (NaN where missing) and whatever
ids the layout carries. Sources only read and check; they never augment or decode pixels.

Columns every source uses the same way:
    path                          absolute image path (inside the data root; ``paths.inside_root``)
    label                         single-label sources: class index 0..K-1 (int; float64 with NaN where
                                  unknown, e.g. a test split); the original id/name in ``table.attrs["classes"]``
                                  (a list: index -> original class id or name)
    image_id                      the layout's own image id where it has one (str)
    bbox_x1, bbox_y1,             object box in pixels of the original image, 0-based, x2/y2
    bbox_x2, bbox_y2              exclusive (NaN where unknown); only layouts with boxes
"""

import importlib
import inspect

# format name -> module in this package exposing load(root, split="train")
FORMATS = {
    "fivek": "keras_fgvc.data.sources.fivek",
    "imagefolder": "keras_fgvc.data.sources.imagefolder",
    "csv": "keras_fgvc.data.sources.csv_table",
    "hotel_id": "keras_fgvc.data.sources.hotel_id",
    "stanford_cars": "keras_fgvc.data.sources.stanford_cars",
    "imagenet_subset": "keras_fgvc.data.sources.imagenet_subset",
    "tfrecord": "keras_fgvc.data.sources.tfrecord",
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
    loader = importlib.import_module(FORMATS[format]).load
    check_options(format, options)
    return loader(root, split=split, **options)


def has_split(format: str, root: str, split: str) -> bool:
    """Whether the data set at ``root`` ships its own ``split`` (drivers carve val/test from train
    otherwise). Formats without a ``has_split`` of their own have only ``train`` for this purpose."""
    module = importlib.import_module(FORMATS[format])
    check = getattr(module, "has_split", None)
    return check(root, split) if check else split == "train"


def options_of(format: str) -> list[str]:
    """The keyword options a format's ``load`` takes besides root and split (``data.source_options``)."""
    parameters = inspect.signature(importlib.import_module(FORMATS[format]).load).parameters
    return [name for name in parameters if name not in ("root", "split")]


def check_options(format: str, options: dict) -> None:
    """DataError naming the first option ``format`` does not take (before anything is read)."""
    from keras_fgvc.errors import DataError

    known = options_of(format)
    for name in options:
        if name not in known:
            raise DataError(f"data.source_options.{name}: format '{format}' takes "
                            f"{', '.join(known) if known else 'no options'}")
