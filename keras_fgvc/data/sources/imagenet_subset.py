"""The VIPriors image-classification layout: a 1,000-class ImageNet subset, 50 images per class and split.

    root/train/<wnid>/*.JPEG     labelled training images
    root/val/<wnid>/*.JPEG       labelled validation images
    root/test/*.JPEG             one flat folder, no labels (the challenge scores the predictions)

The WordNet ids of ``train/`` are sorted and mapped to 0..K-1; ``val`` and ``test`` share that
mapping through ``table.attrs["classes"]``. train and val are plain image folders, so they are read by
``imagefolder.load``; this module adds ``image_id`` (the file name, which the submission file keys on)
and the flat, unlabelled test split.
"""

import os

import numpy as np
import pandas as pd

from keras_fgvc.data.sources import imagefolder
from keras_fgvc.data.sources.paths import inside_root, is_image_file
from keras_fgvc.errors import DataError

SPLITS = ("train", "val", "test")
EXPECTED = "expected the VIPriors layout train/<wnid>/*.JPEG, val/<wnid>/*.JPEG, test/*.JPEG"


def has_split(root, split: str) -> bool:
    """Whether ``root`` holds the ``split`` folder (the challenge ships train, val and test)."""
    return os.path.isdir(os.path.join(root, split))


def load(root, split="train"):
    """The ``split`` Table: ``path`` (absolute), ``label``, ``class_name`` (the wnid) and ``image_id``.

    ``label`` is 0..K-1 (int) for train and val; for test it is NaN (float64), and so is
    ``class_name``. Every split carries the sorted training wnids in ``table.attrs["classes"]``.

    Args:
        root: the folder holding ``train/``, ``val/`` and ``test/``.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises DataError naming the folder when ``train/`` or the split's folder is missing, a val class
    has no training folder, a split holds no images, or a file links out of ``root``.

    Example:
        >>> table = load("/data/vipriors", "test")  # doctest: +SKIP
        >>> table["label"].isna().all(), len(table.attrs["classes"])  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise DataError(f"imagenet_subset has splits {', '.join(SPLITS)}; got '{split}'")
    train_folder = os.path.join(root, "train")
    # Without this check imagefolder would read root itself and take train/val/test for classes.
    if not os.path.isdir(train_folder):
        raise DataError(f"{train_folder}: folder not found ({EXPECTED})")
    if split != "test":
        table = imagefolder.load(root, split)
        table["image_id"] = [os.path.basename(path) for path in table["path"]]
        return table
    classes = imagefolder.load(root, "train").attrs["classes"]
    folder = os.path.join(root, "test")
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: folder not found ({EXPECTED})")
    names = sorted(name for name in os.listdir(folder) if is_image_file(name))
    if not names:
        raise DataError(f"{folder}: no images (the test split is one flat folder of .JPEG files)")
    table = pd.DataFrame({
        "path": [inside_root(root, os.path.abspath(os.path.join(folder, name)), folder) for name in names],
        "label": np.full(len(names), np.nan, dtype="float64"),
        "class_name": pd.Series(np.nan, index=range(len(names)), dtype="str"),
        "image_id": names,
    })
    table.attrs["classes"] = classes
    return table
