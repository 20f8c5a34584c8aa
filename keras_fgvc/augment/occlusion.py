"""Occlusion augmentations: albumentations-style ``CoarseDropout`` and Hotel-ID's red ``OcclusionMask``.

Hotel-ID 2022 test images carry one red rectangle each (SYSTEMS.md section 1, seed 000 section 2.2):
training images get one red rectangle whose sides lie in [size/4, size/2], or a real mask PNG from
``train_masks/`` scaled to the image.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.augment.base import BatchAugmentation, box_mask, checked_fill, paint

RED = (255.0, 0.0, 0.0)


def _side_range(value_range, side):
    """Pixel bounds from an (int, int) range in pixels or a (float, float) range in fractions of ``side``."""
    low, high = value_range
    if isinstance(low, int) and isinstance(high, int):
        return tf.constant(low, tf.float32), tf.constant(high, tf.float32)
    side = tf.cast(side, tf.float32)
    return tf.round(float(low) * side), tf.round(float(high) * side)


def _uniform_int(layer, shape, low, high):
    """Integers uniform in the closed interval [low, high] (float tensors, broadcastable to ``shape``)."""
    return tf.minimum(tf.floor(low + layer.uniform(shape) * (high - low + 1.0)), high)


@keras.saving.register_keras_serializable(package="keras_fgvc")
class CoarseDropout(BatchAugmentation):
    """Fill random rectangles with a colour (albumentations ``CoarseDropout`` semantics).

    Ranges are closed intervals; int pairs are pixels, float pairs are fractions of the image side.

    Args:
        num_holes_range: (min, max) number of holes per image.
        hole_height_range: (min, max) hole height.
        hole_width_range: (min, max) hole width.
        fill_value: a number or a per-channel colour, e.g. (255, 0, 0) for Hotel-ID's red.
        rate: albumentations' ``p``.
        seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = CoarseDropout((1, 8), (0.05, 0.1), (0.05, 0.1), fill_value=(255, 0, 0), rate=0.5)
    """

    _clips_output = False  # pixels are either kept or set to the checked fill colour

    def __init__(self, num_holes_range=(1, 8), hole_height_range=(8, 8), hole_width_range=(8, 8), fill_value=0.0,
                 rate=0.5, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0 < num_holes_range[0] <= num_holes_range[1]:
            raise ValueError(f"num_holes_range must be an increasing positive pair, got {num_holes_range!r}")
        self.num_holes_range = tuple(int(n) for n in num_holes_range)
        self.hole_height_range = tuple(hole_height_range)
        self.hole_width_range = tuple(hole_width_range)
        self.fill_value = checked_fill(fill_value)

    def sample_parameters(self, shape):
        holes = [shape[0], self.num_holes_range[1]]
        height, width = shape[1], shape[2]
        hole_h = _uniform_int(self, holes, *_side_range(self.hole_height_range, height))
        hole_w = _uniform_int(self, holes, *_side_range(self.hole_width_range, width))
        hole_h = tf.minimum(hole_h, tf.cast(height, tf.float32))
        hole_w = tf.minimum(hole_w, tf.cast(width, tf.float32))
        top = tf.floor(self.uniform(holes) * (tf.cast(height, tf.float32) - hole_h + 1.0))
        left = tf.floor(self.uniform(holes) * (tf.cast(width, tf.float32) - hole_w + 1.0))
        count = _uniform_int(self, [shape[0], 1], *(float(n) for n in self.num_holes_range))
        active = tf.range(self.num_holes_range[1], dtype=tf.float32)[None, :] < count
        hole_h = tf.where(active, hole_h, 0.0)  # an inactive hole has zero height
        return {name: tf.cast(v, tf.int32) for name, v in
                (("top", top), ("left", left), ("hole_height", hole_h), ("hole_width", hole_w))}

    def apply_parameters(self, images, parameters):
        shape = tf.shape(images)
        mask = box_mask(shape[1], shape[2], parameters["top"], parameters["left"], parameters["hole_height"],
                        parameters["hole_width"], channels=images.shape[-1])
        return paint(images, mask, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "num_holes_range": list(self.num_holes_range),
                "hole_height_range": list(self.hole_height_range), "hole_width_range": list(self.hole_width_range),
                "fill_value": self.fill_value}


def load_mask_bank(mask_dir, mask_size=64, max_masks=None):
    """Occlusion masks from ``mask_dir/*.png`` as a bool array [N, mask_size, mask_size].

    A pixel is occluded where the PNG is opaque (masks with transparency) or, for opaque PNGs, where
    it is red (R > 127, G < 128, B < 128): Hotel-ID's ``train_masks`` are red rectangles.
    """
    from PIL import Image

    names = sorted(n for n in os.listdir(mask_dir) if n.lower().endswith(".png"))[:max_masks]
    if not names:
        raise FileNotFoundError(f"no .png masks in {mask_dir!r}")
    bank = np.zeros((len(names), mask_size, mask_size), bool)
    for index, name in enumerate(names):
        with Image.open(os.path.join(mask_dir, name)) as image:
            rgba = np.asarray(image.convert("RGBA").resize((mask_size, mask_size), Image.NEAREST))
        alpha = rgba[..., 3]
        if alpha.min() < 255:
            bank[index] = alpha > 127
        else:
            bank[index] = (rgba[..., 0] > 127) & (rgba[..., 1] < 128) & (rgba[..., 2] < 128)
    return bank


@keras.saving.register_keras_serializable(package="keras_fgvc")
class OcclusionMask(BatchAugmentation):
    """Hotel-ID occlusion: one red rectangle, or a real mask PNG scaled to the image.

    Args:
        mode: "rectangle" (height and width each drawn from ``size_range`` x the image side, placed
            uniformly inside the image) or "masks" (a random PNG from ``mask_dir``).
        size_range: rectangle side range as fractions of the side; (1/4, 1/2) as in the Hotel-ID report.
        fill_value: occlusion colour (red by default).
        mask_dir: folder of mask PNGs (``train_masks/``) for ``mode="masks"``.
        mask_size: masks are kept at this square resolution in memory, then scaled (nearest) to the image.
        max_masks: load at most this many masks (sorted by name); ``None`` loads all.
        rate, seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = OcclusionMask()                                   # red rectangle, always
        >>> layer = OcclusionMask(mode="masks", mask_dir="data/hotel_id/train_masks")
    """

    _clips_output = False  # pixels are either kept or set to the checked fill colour

    def __init__(self, mode="rectangle", size_range=(0.25, 0.5), fill_value=RED, mask_dir=None, mask_size=64,
                 max_masks=None, rate=1.0, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if mode not in ("rectangle", "masks"):
            raise ValueError(f"mode must be 'rectangle' or 'masks', got {mode!r}")
        if mode == "masks" and not mask_dir:
            raise ValueError("mode='masks' needs mask_dir (the folder of mask PNGs)")
        self.mode = mode
        self.size_range = tuple(float(s) for s in size_range)
        self.fill_value = checked_fill(fill_value)
        self.mask_dir = mask_dir
        self.mask_size = int(mask_size)
        self.max_masks = max_masks
        self._bank = load_mask_bank(mask_dir, self.mask_size, max_masks) if mode == "masks" else None

    def sample_parameters(self, shape):
        batch = [shape[0]]
        if self.mode == "masks":
            return {"mask_index": self.randint(batch, 0, len(self._bank))}
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        low, high = self.size_range
        box_h = _uniform_int(self, batch, tf.round(low * height), tf.round(high * height))
        box_w = _uniform_int(self, batch, tf.round(low * width), tf.round(high * width))
        top = tf.floor(self.uniform(batch) * (height - box_h + 1.0))
        left = tf.floor(self.uniform(batch) * (width - box_w + 1.0))
        return {name: tf.cast(v, tf.int32) for name, v in
                (("top", top), ("left", left), ("box_height", box_h), ("box_width", box_w))}

    def occlusion(self, shape, parameters, channels=1):
        """Boolean [B, H, W * channels] occlusion for a batch of ``shape`` (a tf.shape) under ``parameters``
        (with ``channels=1``: the [B, H, W] pixel mask; see ``box_mask`` for the row layout)."""
        if self.mode == "masks":
            masks = tf.gather(tf.constant(self._bank.astype(np.uint8)), parameters["mask_index"])[..., None]
            pixels = tf.image.resize(masks, shape[1:3], method="nearest") > 0
            return tf.reshape(tf.broadcast_to(pixels, tf.concat([shape[:3], [channels]], 0)),
                              [shape[0], shape[1], shape[2] * channels])
        return box_mask(shape[1], shape[2], parameters["top"], parameters["left"], parameters["box_height"],
                        parameters["box_width"], channels=channels)

    def apply_parameters(self, images, parameters):
        mask = self.occlusion(tf.shape(images), parameters, channels=images.shape[-1])
        return paint(images, mask, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "size_range": list(self.size_range),
                "fill_value": self.fill_value, "mask_dir": self.mask_dir, "mask_size": self.mask_size,
                "max_masks": self.max_masks}
