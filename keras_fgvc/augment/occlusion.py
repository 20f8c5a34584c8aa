"""Occlusion augmentations: albumentations-style ``CoarseDropout`` and Hotel-ID's red ``OcclusionMask``.

Hotel-ID 2022 test images carry one red rectangle each (SYSTEMS.md section 1, seed 000 section 2.2):
training images get one red rectangle whose sides lie in [size/4, size/2], or a real mask from
``train_masks/`` scaled to the image. The masks reach the layer as an array
(``keras_fgvc.data.masks.load_mask_bank``): layers never read files.
"""

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


@keras.saving.register_keras_serializable(package="keras_fgvc")
class OcclusionMask(BatchAugmentation):
    """Hotel-ID occlusion: one red rectangle, or a real mask from a mask bank scaled to the image.

    The bank is runtime data, not configuration: ``get_config`` leaves it out (a config stays small
    and never names a folder), so rebuilding a ``mode="masks"`` layer from its config needs the bank
    again: ``OcclusionMask.from_config(config, mask_bank=bank)`` or ``OcclusionMask(**config,
    mask_bank=bank)``.

    Args:
        mode: "rectangle" (height and width each drawn from ``size_range`` x the image side, placed
            uniformly inside the image) or "masks" (a random mask of ``mask_bank``, scaled to the image).
        size_range: rectangle side range as fractions of the side; (1/4, 1/2) as in the Hotel-ID report.
        fill_value: occlusion colour (red by default).
        mask_bank: for ``mode="masks"``: array [N, h, w] of bool/uint8, nonzero = occluded, from
            ``keras_fgvc.data.masks.load_mask_bank``; ignored (and not kept) for ``mode="rectangle"``.
        rate, seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = OcclusionMask()                                   # red rectangle, always
        >>> from keras_fgvc.data.masks import load_mask_bank
        >>> from keras_fgvc.data.sources.hotel_id import mask_paths
        >>> bank = load_mask_bank(mask_paths("data/hotel_id"))  # doctest: +SKIP
        >>> layer = OcclusionMask(mode="masks", mask_bank=bank)  # doctest: +SKIP
    """

    _clips_output = False  # pixels are either kept or set to the checked fill colour

    def __init__(self, mode="rectangle", size_range=(0.25, 0.5), fill_value=RED, mask_bank=None, rate=1.0,
                 seed=None, **kwargs):
        if "mask_dir" in kwargs:  # the old file-reading API: say what replaced it instead of Keras' generic error
            raise ValueError("OcclusionMask no longer reads files: pass "
                             "mask_bank=keras_fgvc.data.masks.load_mask_bank(paths) instead of mask_dir")
        super().__init__(rate=rate, seed=seed, **kwargs)
        if mode not in ("rectangle", "masks"):
            raise ValueError(f"mode must be 'rectangle' or 'masks', got {mode!r}")
        self.mode = mode
        self.size_range = tuple(float(s) for s in size_range)
        self.fill_value = checked_fill(fill_value)
        self.mask_bank = _checked_bank(mask_bank) if mode == "masks" else None

    @classmethod
    def from_config(cls, config, mask_bank=None):
        """The layer of ``config``; ``mask_bank`` is required for ``mode="masks"`` (configs never hold it)."""
        return cls(**config, mask_bank=mask_bank)

    def sample_parameters(self, shape):
        batch = [shape[0]]
        if self.mode == "masks":
            return {"mask_index": self.randint(batch, 0, len(self.mask_bank))}
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
            masks = tf.gather(tf.constant(self.mask_bank.astype(np.uint8)), parameters["mask_index"])[..., None]
            pixels = tf.image.resize(masks, shape[1:3], method="nearest") > 0
            return tf.reshape(tf.broadcast_to(pixels, tf.concat([shape[:3], [channels]], 0)),
                              [shape[0], shape[1], shape[2] * channels])
        return box_mask(shape[1], shape[2], parameters["top"], parameters["left"], parameters["box_height"],
                        parameters["box_width"], channels=channels)

    def apply_parameters(self, images, parameters):
        mask = self.occlusion(tf.shape(images), parameters, channels=images.shape[-1])
        return paint(images, mask, self.fill_value)

    def get_config(self):
        # No mask_bank: see the class docstring.
        return {**super().get_config(), "mode": self.mode, "size_range": list(self.size_range),
                "fill_value": self.fill_value}


def _checked_bank(mask_bank):
    """``mask_bank`` as a bool ndarray [N, h, w] with N >= 1; ValueError saying how to build one."""
    if mask_bank is None:
        raise ValueError("mode='masks' needs a mask bank: pass "
                         "mask_bank=keras_fgvc.data.masks.load_mask_bank(paths) (e.g. the paths of "
                         "keras_fgvc.data.sources.hotel_id.mask_paths(root))")
    bank = np.asarray(mask_bank)
    if bank.ndim != 3 or bank.shape[0] < 1 or min(bank.shape[1:]) < 1:
        raise ValueError(f"mask_bank must be an array [N, height, width] with N >= 1, got shape {bank.shape}")
    if not (bank.dtype == bool or np.issubdtype(bank.dtype, np.integer)):
        raise ValueError(f"mask_bank must hold bool or integer (nonzero = occluded) values, got {bank.dtype}")
    return bank != 0


def fixed_rectangles(count: int, side: int, seed: int, size_range=(0.25, 0.5)) -> np.ndarray:
    """``[count, 4]`` int32 boxes ``(top, left, height, width)`` drawn once from ``seed``: the
    same red rectangle on the same validation image every epoch and every run, so a validation
    metric moves only with the model. Sides are drawn like ``OcclusionMask``'s rectangle mode.

    Example:
        >>> fixed_rectangles(2, 64, seed=0).shape
        (2, 4)
    """
    rng = np.random.default_rng(seed)
    low, high = (int(round(f * side)) for f in size_range)
    heights, widths = (rng.integers(low, high + 1, count) for _ in range(2))
    tops = np.floor(rng.random(count) * (side - heights + 1)).astype(np.int64)
    lefts = np.floor(rng.random(count) * (side - widths + 1)).astype(np.int64)
    return np.stack([tops, lefts, heights, widths], axis=1).astype(np.int32)


def paint_rectangles(images, boxes, fill_value=RED):
    """``images`` [B, H, W, C] with each image's box of ``boxes`` [B, 4] (``fixed_rectangles``) filled."""
    shape = tf.shape(images)
    boxes = tf.cast(boxes, tf.int32)
    mask = box_mask(shape[1], shape[2], boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], channels=images.shape[-1])
    return paint(images, mask, fill_value)
