"""Stanford Cars (Krause et al., 3DRR 2013): 196 car models, 16,185 images, a box around each car.

Two on-disk layouts are read; the combined file wins where both are present:

    root/cars_annos.mat                    annotations (relative_im_path, bbox_x1..bbox_y2, class, test)
    root/car_ims/*.jpg                     + class_names; ``test`` (0/1) picks the split

    root/devkit/cars_meta.mat              class_names                            (the older devkit)
    root/devkit/cars_train_annos.mat       annotations (bbox_x1..bbox_y2, class, fname)
    root/cars_train/*.jpg
    root/cars_test_annos_withlabels.mat    the same fields for the test split (also read from devkit/)
    root/cars_test/*.jpg

MATLAB counts from 1: ``class`` is 1..K and a box is inclusive pixels 1..W. The Table follows the
package contract instead (``label`` 0..K-1; boxes 0-based with x2/y2 exclusive), so ``bbox_x1 - 1``
and ``bbox_x2`` unchanged. Error messages give the record as MATLAB numbers it (``record 1`` is
``annotations(1)``), which is also the number in the image file name of the combined layout.
"""

import os

import numpy as np
import pandas as pd

from keras_fgvc.data.sources.paths import inside_root
from keras_fgvc.errors import DataError

SPLITS = ("train", "test")
COMBINED = "cars_annos.mat"
DEVKIT_META = os.path.join("devkit", "cars_meta.mat")
DEVKIT_ANNOS = {
    "train": (os.path.join("devkit", "cars_train_annos.mat"),),
    # The devkit ships cars_test_annos.mat without labels; the labelled file was released later
    # and people keep it either beside the image folders or inside devkit/.
    "test": ("cars_test_annos_withlabels.mat", os.path.join("devkit", "cars_test_annos_withlabels.mat")),
}
DEVKIT_IMAGES = {"train": "cars_train", "test": "cars_test"}
BOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
EXPECTED = (
    f"expected either {COMBINED} + car_ims/ (combined layout) or {DEVKIT_META}, "
    f"{DEVKIT_ANNOS['train'][0]} + cars_train/ and {DEVKIT_ANNOS['test'][0]} + cars_test/ (devkit layout)"
)


def has_split(root, split: str) -> bool:
    """Stanford Cars has a train and a labelled test split in both layouts (no val)."""
    return split in SPLITS


def load(root, split="train"):
    """The ``split`` Table of Stanford Cars under ``root`` (either layout).

    Columns: ``path`` (absolute), ``label`` (0..K-1), ``class_name``, ``image_id`` (file name stem)
    and ``bbox_x1``, ``bbox_y1``, ``bbox_x2``, ``bbox_y2`` (0-based, x2/y2 exclusive);
    ``table.attrs["classes"]`` lists the K class names.

    Args:
        root: folder holding ``cars_annos.mat`` + ``car_ims/``, or ``devkit/`` + ``cars_train/`` + ``cars_test/``.
        split: ``"train"`` or ``"test"``.

    Raises DataError naming the .mat file (and the record, counted from 1) when a file is missing or
    unreadable, a field is absent or not a number, a class is outside 1..K, a box is empty, or an
    image is missing or lies outside ``root``.

    Example:
        >>> table = load("/data/stanford_cars", "test")  # doctest: +SKIP
        >>> table.attrs["classes"][table["label"].iloc[0]], table[["bbox_x1", "bbox_x2"]].iloc[0]  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise DataError(f"stanford_cars has splits {', '.join(SPLITS)}; got '{split}'")
    if not os.path.isdir(root):
        raise DataError(f"{root}: folder not found ({EXPECTED})")
    combined = os.path.join(root, COMBINED)
    if os.path.isfile(combined):
        mat = _read_mat(combined)
        classes = _class_names(mat, combined)
        records = _records(mat, combined, ("relative_im_path", *BOX_FIELDS, "class", "test"))
        in_test = np.array([_integer(value, combined, i, "test") for i, value in enumerate(records["test"])])
        bad = ~np.isin(in_test, (0, 1))
        if bad.any():
            raise _record_error(combined, bad, f"field 'test' must be 0 or 1, got {in_test[bad][0]}")
        keep = in_test == (1 if split == "test" else 0)
        if not keep.any():
            raise DataError(f"{combined}: no record has test = {int(split == 'test')} (the {split} split is empty)")
        files = [_text(value, combined, i, "relative_im_path") for i, value in enumerate(records["relative_im_path"])]
        return _table(root, combined, records, files, keep, classes)
    meta = os.path.join(root, DEVKIT_META)
    if not os.path.isfile(meta):
        raise DataError(f"{root}: no Stanford Cars annotations ({EXPECTED})")
    classes = _class_names(_read_mat(meta), meta)
    candidates = [os.path.join(root, name) for name in DEVKIT_ANNOS[split]]
    annos = next((path for path in candidates if os.path.isfile(path)), None)
    if annos is None:
        raise DataError(
            f"{' or '.join(candidates)}: file not found (the devkit layout keeps the {split} split's boxes and "
            f"labels there, images in {DEVKIT_IMAGES[split]}/; devkit/cars_test_annos.mat has no labels)"
        )
    records = _records(_read_mat(annos), annos, (*BOX_FIELDS, "class", "fname"))
    files = [
        os.path.join(DEVKIT_IMAGES[split], _text(value, annos, i, "fname")) for i, value in enumerate(records["fname"])
    ]
    return _table(root, annos, records, files, np.ones(len(files), dtype=bool), classes)


def _read_mat(mat_path: str) -> dict:
    # Imported here so that reading any other layout never needs scipy.
    import scipy.io

    try:
        # squeeze_me turns MATLAB's 1x1 cells and numbers into plain Python values.
        return scipy.io.loadmat(mat_path, squeeze_me=True)
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise DataError(f"{mat_path}: cannot read MATLAB file: {str(error).splitlines()[0]}") from None


def _class_names(mat: dict, mat_path: str) -> list[str]:
    if "class_names" not in mat:
        raise DataError(f"{mat_path}: no 'class_names' variable (found {', '.join(_variables(mat))})")
    # A 1 x K cell squeezes to K strings, a 1 x 1 cell to one bare string.
    names = [str(name).strip() for name in np.atleast_1d(np.asarray(mat["class_names"], dtype=object)).ravel()]
    if not names:
        raise DataError(f"{mat_path}: 'class_names' is empty")
    return names


def _records(mat: dict, mat_path: str, fields) -> dict[str, list]:
    """{field: one value per record} of the ``annotations`` struct array."""
    if "annotations" not in mat:
        raise DataError(f"{mat_path}: no 'annotations' variable (found {', '.join(_variables(mat))})")
    # One record squeezes to a 0-d array; atleast_1d makes every size a list of records.
    annotations = np.atleast_1d(mat["annotations"])
    found = annotations.dtype.names or ()
    missing = [field for field in fields if field not in found]
    if missing:
        raise DataError(
            f"{mat_path}: 'annotations' lacks field(s) {', '.join(missing)}; found {', '.join(found) or 'none'}"
        )
    if annotations.size == 0:
        raise DataError(f"{mat_path}: 'annotations' has no records")
    return {field: list(annotations[field].ravel()) for field in fields}


def _variables(mat: dict) -> list[str]:
    return [name for name in mat if not name.startswith("__")] or ["no variables"]


def _integer(value, mat_path: str, index: int, field: str) -> int:
    number = np.asarray(value).ravel()
    if number.size != 1 or not np.issubdtype(number.dtype, np.number) or not np.isfinite(number[0]):
        raise DataError(f"{mat_path}: record {index + 1}: field '{field}' must be one number, got {value!r}")
    if number[0] != int(number[0]):
        raise DataError(f"{mat_path}: record {index + 1}: field '{field}' must be a whole number, got {number[0]}")
    # int() first: MATLAB stores these as uint8/uint16, where value - 1 would wrap around at 0.
    return int(number[0])


def _text(value, mat_path: str, index: int, field: str) -> str:
    text = value.item() if isinstance(value, np.ndarray) and value.size == 1 else value
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{mat_path}: record {index + 1}: field '{field}' must be a file name, got {value!r}")
    return text.strip()


def _record_error(mat_path: str, bad: np.ndarray, problem: str) -> DataError:
    first = int(np.flatnonzero(bad)[0])
    return DataError(f"{mat_path}: record {first + 1}: {problem} ({int(bad.sum())} of {len(bad)} records)")


def _table(root, mat_path, records, files, keep, classes) -> pd.DataFrame:
    labels = np.array([_integer(value, mat_path, i, "class") for i, value in enumerate(records["class"])])
    bad = (labels < 1) | (labels > len(classes))
    if bad.any():
        raise _record_error(
            mat_path, bad, f"class {labels[bad][0]} is outside 1..{len(classes)} (the {len(classes)} class_names)"
        )
    boxes = np.array(
        [[_integer(records[field][i], mat_path, i, field) for field in BOX_FIELDS] for i in range(len(labels))]
    )
    empty = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if empty.any():
        x1, y1, x2, y2 = boxes[empty][0]
        raise _record_error(mat_path, empty, f"empty box x {x1}..{x2}, y {y1}..{y2} (bbox_x2/y2 below bbox_x1/y1)")
    rows = np.flatnonzero(keep)
    paths = [inside_root(root, files[i], f"{mat_path}: record {i + 1}") for i in rows]
    exists = np.array([os.path.isfile(path) for path in paths], dtype=bool)
    if not exists.all():
        first = int(np.flatnonzero(~exists)[0])
        raise DataError(
            f"{mat_path}: record {rows[first] + 1}: image {paths[first]} not found "
            f"({int((~exists).sum())} of {len(paths)} images missing)"
        )
    # 1-based inclusive -> 0-based with an exclusive end: the first corner moves, the far one stays.
    boxes = boxes[rows].astype("float64") - np.array([1.0, 1.0, 0.0, 0.0])
    table = pd.DataFrame({
        "path": paths,
        "label": labels[rows] - 1,
        "class_name": [classes[label - 1] for label in labels[rows]],
        "image_id": [os.path.splitext(os.path.basename(files[i]))[0] for i in rows],
        **{field: boxes[:, column] for column, field in enumerate(BOX_FIELDS)},
    })
    table.attrs["classes"] = classes
    return table
