"""Paths a Table may hold: inside the data root, existing, with an image extension.

Shared by every source, so a table can never point a run at ``../../etc/passwd`` or at a file
that a symlink leads out of the data root.
"""

import os

from keras_fgvc.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def inside_root(root: str, path: str, where: str) -> str:
    """The absolute ``path`` (relative paths are taken from ``root``); DataError when it escapes the root.

    ``where`` names the file and row for the message, e.g. ``"train.csv: row 7"``.
    """
    real_root = os.path.realpath(root)
    candidate = path if os.path.isabs(path) else os.path.join(root, path)
    real = os.path.realpath(candidate)
    if os.path.commonpath([real_root, real]) != real_root:
        raise DataError(f"{where}: path {path!r} leads outside the data root {real_root}")
    return os.path.abspath(candidate)


def contiguous_ids(values) -> tuple[list, dict]:
    """Sorted distinct class values and {value: index}: class ids become 0..K-1, the mapping is kept."""
    classes = sorted(set(values), key=lambda v: (str(type(v)), v))
    return classes, {value: index for index, value in enumerate(classes)}
