"""Kaggle Hotel-ID 2022 (FGVC9) layout (SYSTEMS.md section 1).

    root/train_images/<hotel_id>/*.jpg     one folder per hotel (44,703 images, 3,116 hotels)
    root/train_masks/*.png                 occlusion masks: red rectangles, some on transparency
    root/test_images/*.jpg                 unlabelled, already occluded
    root/sample_submission.csv             image_id,hotel_id (optional; not read: test rows come
                                           from test_images/)
    root/test_truth.csv                    image_id,hotel_id, the demo data's hidden test labels only

Hotel ids become labels 0..K-1. Kaggle's ids are integers that skip values, so all-digit folder
names sort numerically (``"9"`` before ``"10"``) and stay ints in ``hotel_id`` and
``table.attrs["classes"]`` (leading zeros keep them strings, to stay exact); other names sort as strings.
"""

import os
import re

import numpy as np
import pandas as pd

from keras_fgvc.data.sources.csv_file import read_csv
from keras_fgvc.data.sources.paths import inside_root, is_image_file
from keras_fgvc.errors import DataError

SPLITS = ("train", "test")
LAYOUT = "expected the Kaggle Hotel-ID layout: train_images/<hotel_id>/*.jpg, train_masks/*.png, test_images/*.jpg"
_DIGITS = re.compile(r"[0-9]+")


def _folder(root: str, name: str) -> str:
    if not os.path.isdir(root):
        raise DataError(f"{root}: folder not found ({LAYOUT})")
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: folder not found ({LAYOUT})")
    return folder


def _images(folder: str, root: str) -> list[tuple[str, str]]:
    """(absolute path, file name) of the image files directly in ``folder``, sorted by name."""
    return [(inside_root(root, os.path.join(os.path.abspath(folder), name), folder), name)
            for name in sorted(os.listdir(folder)) if is_image_file(name) and not os.path.isdir(os.path.join(folder, name))]


def hotel_ids(root: str) -> tuple[list, list[str]]:
    """``(ids, folder names)`` of the hotels under ``root/train_images``, in label order.

    ids are ints when every folder name is a plain decimal number (Kaggle's ids), else the names.
    """
    train_dir = _folder(root, "train_images")
    names = [n for n in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, n)) and not n.startswith(".")]
    if not names:
        raise DataError(f"{train_dir}: no hotel folders ({LAYOUT})")
    if all(_DIGITS.fullmatch(n) for n in names):
        names.sort(key=lambda n: (int(n), n))
        exact_ints = all(str(int(n)) == n for n in names)
        return ([int(n) for n in names] if exact_ints else list(names)), names
    names.sort()
    return list(names), names


def load(root, split="train"):
    """The ``split`` Table: ``path``, ``label``, ``hotel_id`` (train only), ``image_id`` (file name).

    ``train``: one row per image of ``train_images/<hotel_id>/``, hotels in label order, files sorted;
    ``label`` is the hotel's index (int64). ``test``: one row per ``test_images/*`` file with ``label``
    NaN (float64). Both carry ``table.attrs["classes"]``: the hotel ids in label order.

    Raises DataError naming the folder or file when a folder is missing, there are no hotel folders,
    a hotel folder holds no images (a class nobody can learn or retrieve), an image lies directly in
    ``train_images/``, a split holds no images, or a file links out of the root.

    Example:
        >>> table = load("data/hotel_id")  # doctest: +SKIP
        >>> table.attrs["classes"][:3], table[["label", "hotel_id", "image_id"]].iloc[0]  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise DataError(f"hotel_id has splits {', '.join(SPLITS)}; got '{split}'")
    classes, folders = hotel_ids(root)
    if split == "test":
        test_dir = _folder(root, "test_images")
        files = _images(test_dir, root)
        if not files:
            raise DataError(f"{test_dir}: no images ({LAYOUT})")
        table = pd.DataFrame({"path": [p for p, _ in files], "label": np.full(len(files), np.nan, np.float64),
                              "image_id": [n for _, n in files]})
        table.attrs["classes"] = classes
        return table
    train_dir = os.path.join(root, "train_images")
    stray = [name for name in sorted(os.listdir(train_dir)) if is_image_file(name)
             and not os.path.isdir(os.path.join(train_dir, name))]
    if stray:
        raise DataError(f"{os.path.join(train_dir, stray[0])}: image outside a hotel folder "
                        f"({len(stray)} such files; expected train_images/<hotel_id>/*.jpg)")
    rows = []
    for label, (hotel, folder) in enumerate(zip(classes, folders)):
        files = _images(os.path.join(train_dir, folder), root)
        if not files:
            raise DataError(f"{os.path.join(train_dir, folder)}: hotel folder holds no images")
        rows.extend((path, label, hotel, name) for path, name in files)
    table = pd.DataFrame(rows, columns=["path", "label", "hotel_id", "image_id"])
    table["label"] = table["label"].astype(np.int64)
    table.attrs["classes"] = classes
    return table


def mask_paths(root) -> list[str]:
    """The sorted absolute paths of ``root/train_masks/*.png`` (for ``data.masks.load_mask_bank``).

    Raises DataError when the folder is missing, holds no PNG, or a mask links out of the root.

    Example:
        >>> from keras_fgvc.data.masks import load_mask_bank
        >>> bank = load_mask_bank(mask_paths("data/hotel_id"))  # doctest: +SKIP
    """
    mask_dir = _folder(root, "train_masks")
    paths = [path for path, name in _images(mask_dir, root) if name.lower().endswith(".png")]
    if not paths:
        raise DataError(f"{mask_dir}: no .png masks ({LAYOUT})")
    return paths


def load_truth(root):
    """The ``test`` Table with the demo data's hidden labels (``test_truth.csv``), or None for real data.

    Raises DataError naming the row when a truth row names an unknown image or hotel, or a test
    image has no truth row.

    Example:
        >>> truth = load_truth("data/hotel_id_demo")  # doctest: +SKIP
    """
    csv_path = os.path.join(root, "test_truth.csv")
    if not os.path.isfile(csv_path):
        return None
    table = load(root, split="test")
    truth = read_csv(csv_path, ["image_id", "hotel_id"], "the demo's image_id,hotel_id truth of test_images/")
    classes = table.attrs["classes"]
    index = {str(hotel): label for label, hotel in enumerate(classes)}
    known_images = set(table["image_id"])
    labels = {}
    for row, (image_id, hotel) in enumerate(zip(truth["image_id"].astype(str), truth["hotel_id"].astype(str))):
        if image_id not in known_images:
            raise DataError(f"{csv_path}: row {row + 2}: image '{image_id}' is not in test_images/")
        if hotel not in index:
            raise DataError(f"{csv_path}: row {row + 2}: hotel_id '{hotel}' has no folder in train_images/")
        labels[image_id] = index[hotel]
    missing = [name for name in table["image_id"] if name not in labels]
    if missing:
        raise DataError(f"{csv_path}: no row for test image '{missing[0]}' ({len(missing)} of {len(table)} missing)")
    table["label"] = table["image_id"].map(labels).astype(np.int64)
    table["hotel_id"] = [classes[label] for label in table["label"]]
    return table
