"""Occlusion mask banks: mask PNGs read into one boolean array for ``augment.OcclusionMask``.

Files are read here, in ``data/``, and the augmentation layer gets the array (DESIGN.md, data
contract: "an augmentation layer gets a mask bank as a tensor"), so a layer never touches the disk
and its config never holds a folder that may not exist where the model is loaded.
"""

import numpy as np

from keras_fgvc.errors import DataError


def load_mask_bank(paths, mask_size=64) -> np.ndarray:
    """Mask PNGs as a bool array [N, mask_size, mask_size], in the order of ``paths``.

    A pixel is occluded where the PNG is opaque (masks with transparency) or, for opaque PNGs, where
    it is red (R > 127, G < 128, B < 128): Hotel-ID's ``train_masks`` are red rectangles, some on a
    transparent background, some on black. Masks are scaled (nearest) to ``mask_size`` squares;
    ``OcclusionMask`` scales them again to each image.

    Args:
        paths: mask image files, e.g. ``data.sources.hotel_id.mask_paths(root)``.
        mask_size: side of the square each mask is kept at in memory (64: 4,950 Kaggle masks take 20 MB).

    Returns:
        bool ndarray [len(paths), mask_size, mask_size].

    Raises:
        DataError: no paths, or a file that is missing or not a readable image (the message names it).

    Example:
        >>> from keras_fgvc.data.sources.hotel_id import mask_paths
        >>> bank = load_mask_bank(mask_paths("data/hotel_id"), mask_size=64)  # doctest: +SKIP
        >>> OcclusionMask(mode="masks", mask_bank=bank)  # doctest: +SKIP
    """
    from PIL import Image, UnidentifiedImageError

    paths = [str(p) for p in paths]
    if not paths:
        raise DataError("load_mask_bank: no mask files given (expected a list of PNG paths, e.g. train_masks/*.png)")
    if int(mask_size) < 1:
        raise ValueError(f"mask_size must be a positive int, got {mask_size!r}")
    bank = np.zeros((len(paths), int(mask_size), int(mask_size)), bool)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                rgba = np.asarray(image.convert("RGBA").resize((bank.shape[2], bank.shape[1]), Image.NEAREST))
        except FileNotFoundError:
            raise DataError(f"{path}: mask file not found") from None
        # PIL reports a truncated or garbled file as one of these, depending on where the bytes break.
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{path}: cannot read mask image: {str(error).splitlines()[0]}") from None
        alpha = rgba[..., 3]
        if alpha.min() < 255:
            bank[index] = alpha > 127
        else:
            bank[index] = (rgba[..., 0] > 127) & (rgba[..., 1] < 128) & (rgba[..., 2] < 128)
    return bank
