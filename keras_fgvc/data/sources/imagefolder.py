"""Any folder of images, one sub-folder per class (the torchvision ``ImageFolder`` layout).

    root/<class>/*.jpg                       one split: ``train`` (val/test come from the driver's split)
    root/{train,val,test}/<class>/*.jpg      the data set's own splits (any of val/ and test/ may be absent)

Class names are sorted and mapped to 0..K-1 from the ``train`` folders, so every split shares one
mapping; the Table keeps the name in ``class_name`` and the ordered names in ``table.attrs["classes"]``.
"""

import os

import pandas as pd

from keras_fgvc.data.sources.paths import contiguous_ids, inside_root, is_image_file
from keras_fgvc.errors import DataError

SPLITS = ("train", "val", "test")


def _split_root(root: str, split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"imagefolder has splits {', '.join(SPLITS)}; got '{split}'")
    if not os.path.isdir(root):
        raise DataError(f"{root}: folder not found (expected one sub-folder of images per class)")
    if os.path.isdir(os.path.join(root, "train")):
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: folder not found (this data set has no '{split}' split)")
        return folder
    if split != "train":
        raise DataError(f"{root}: no '{split}' folder; a folder without train/ holds only the train split")
    return root


def _classes(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)))


def has_split(root, split: str) -> bool:
    """Whether the data set at ``root`` has its own ``split`` (a flat class folder has only train)."""
    if split == "train":
        return True
    return os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, split))


def load(root, split="train"):
    """The ``split`` Table: ``path`` (absolute), ``label`` (0..K-1), ``class_name``.

    Raises DataError naming the folder when the layout is wrong, a class folder of val/test is not
    a training class, a split holds no images, or a file links out of the root.

    Example:
        >>> table = load("/data/flowers")  # flowers/<class>/*.jpg  # doctest: +SKIP
        >>> table.attrs["classes"][:2], table["label"].max()  # doctest: +SKIP
    """
    folder = _split_root(root, split)
    train_folder = _split_root(root, "train")
    classes, index = contiguous_ids(_classes(train_folder))
    if not classes:
        raise DataError(f"{train_folder}: no class sub-folders (expected <class>/<image> files)")
    rows = []
    for name in _classes(folder):
        if name not in index:
            raise DataError(f"{os.path.join(folder, name)}: class '{name}' has no folder in {train_folder}")
        class_dir = os.path.join(folder, name)
        for file in sorted(os.listdir(class_dir)):
            if is_image_file(file):
                # absolute: class_dir already starts with root, which may be relative to the cwd
                path = inside_root(root, os.path.abspath(os.path.join(class_dir, file)), f"{class_dir}")
                rows.append((path, index[name], name))
    if not rows:
        raise DataError(f"{folder}: no images ({', '.join(e.lstrip('.') for e in ('.jpg', '.png', '.bmp', '.gif'))}) in its class folders")
    table = pd.DataFrame(rows, columns=["path", "label", "class_name"])
    table.attrs["classes"] = classes
    return table
