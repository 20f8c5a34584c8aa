"""Robust image decoding for tf.data and the exported models.

Any of JPEG/PNG/GIF (first frame)/BMP; greyscale, grey+alpha, RGBA and CMYK to a fixed channel
count; 16-bit PNGs scaled to 8 bits (TensorFlow keeps the high byte). TensorFlow ignores EXIF, so the
orientation tag is read once by ``data.checks`` and applied here as a transpose/flip.

Then, in this order: an optional object box (crop to it, or erase the background outside it, the
thesis's C-10/C-11 ablations), one resize policy, rounding to integers:

    squash   resize to size x size, aspect ratio not kept (timm/torchvision ``Resize((s, s))``)
    pad      keep the aspect ratio, fit inside size x size, pad with black (letterbox)
    crop     shorter side to size, then the central size x size crop (ImageNet evaluation style)
"""

import tensorflow as tf

RESIZE_POLICIES = ("squash", "pad", "crop")
BOX_MODES = ("none", "crop", "erase_background")
# Stanford Cars thesis C-11: the car on a white background of the original image size.
ERASE_FILL = 255


def decode_image(encoded: tf.Tensor, channels: int = 3, orientation=1) -> tf.Tensor:
    """Decode one encoded image to uint8 [H, W, channels], upright per its EXIF ``orientation`` (1-8)."""
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, None])
    have = tf.shape(image)[-1]
    if channels == 3:
        # 1 -> 3 by repeating grey; 2 (grey+alpha) and 4 (RGBA) drop alpha.
        image = tf.case(
            [
                (tf.equal(have, 1), lambda: tf.image.grayscale_to_rgb(image)),
                (tf.equal(have, 2), lambda: tf.image.grayscale_to_rgb(image[..., :1])),
            ],
            default=lambda: image[..., :3],
        )
    elif channels == 1:
        image = tf.cond(
            tf.greater_equal(have, 3),
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
            lambda: image[..., :1],
        )
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = tf.ensure_shape(image, [None, None, channels])
    return upright(image, orientation)


def upright(image: tf.Tensor, orientation) -> tf.Tensor:
    """Apply EXIF orientation 1-8 (what PIL's ``ImageOps.exif_transpose`` does) to [H, W, C]."""
    orientation = tf.cast(orientation, tf.int32)
    transposed = tf.transpose(image, [1, 0, 2])
    # EXIF 2..8 as flips of the image or of its transpose (EXIF 2.3, table 9).
    branches = [
        lambda: image,
        lambda: image,
        lambda: image[:, ::-1],                # 2: mirror horizontal
        lambda: image[::-1, ::-1],             # 3: rotate 180
        lambda: image[::-1, :],                # 4: mirror vertical
        lambda: transposed,                    # 5: transpose
        lambda: transposed[:, ::-1],           # 6: rotate 90 clockwise
        lambda: transposed[::-1, ::-1],        # 7: transverse
        lambda: transposed[::-1, :],           # 8: rotate 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 0, 8), branches)


def apply_box(image: tf.Tensor, box, mode: str) -> tf.Tensor:
    """Crop ``image`` to ``box`` (x1, y1, x2, y2; 0-based, exclusive; NaN = no box) or erase outside it."""
    if mode == "none":
        return image
    if mode not in BOX_MODES:
        raise ValueError(f"box mode must be one of {BOX_MODES}, got {mode!r}")
    box = tf.cast(box, tf.float32)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    x1 = tf.clip_by_value(tf.cast(tf.math.floor(box[0]), tf.int32), 0, width - 1)
    y1 = tf.clip_by_value(tf.cast(tf.math.floor(box[1]), tf.int32), 0, height - 1)
    x2 = tf.clip_by_value(tf.cast(tf.math.ceil(box[2]), tf.int32), x1 + 1, width)
    y2 = tf.clip_by_value(tf.cast(tf.math.ceil(box[3]), tf.int32), y1 + 1, height)
    if mode == "crop":
        boxed = image[y1:y2, x1:x2]
    else:
        rows = tf.range(height)[:, None]
        cols = tf.range(width)[None, :]
        inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
        boxed = tf.where(inside[..., None], image, tf.cast(ERASE_FILL, image.dtype))
    has_box = tf.reduce_all(tf.math.is_finite(box))
    return tf.cond(has_box, lambda: boxed, lambda: image)


def resize(image: tf.Tensor, size: int, policy: str = "squash") -> tf.Tensor:
    """Resize [H, W, C] to float32 [size, size, C] in [0, 255] under ``policy`` (module docstring)."""
    if policy == "squash":
        out = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    elif policy == "pad":
        out = tf.image.resize_with_pad(tf.cast(image, tf.float32), size, size, antialias=True)
    elif policy == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = float(size) / tf.reduce_min(shape)
        scaled = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
        out = tf.image.resize(image, scaled, method="bilinear", antialias=True)
        top = (scaled[0] - size) // 2
        left = (scaled[1] - size) // 2
        out = out[top:top + size, left:left + size]
    else:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}, got {policy!r}")
    out = tf.ensure_shape(out, [size, size, image.shape[-1]])
    return tf.clip_by_value(out, 0.0, 255.0)


def model_pixels(encoded: tf.Tensor, size: int, channels: int = 3, policy: str = "squash", orientation=1,
                 box=None, box_mode: str = "none") -> tf.Tensor:
    """The exact pixels every model sees: decoded, upright, boxed, resized, rounded to [0, 255] integers.

    Training caches these as uint8 and exported models compute them from the raw bytes (orientation
    1, no box: a served image comes without its EXIF check or a box), so both paths feed the network
    identical values for the same upright image.
    """
    image = decode_image(encoded, channels, orientation)
    if box is not None:
        image = apply_box(image, box, box_mode)
    return tf.round(resize(image, size, policy))


def random_crop_pixels(encoded: tf.Tensor, size: int, channels: int = 3, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                       seed=None) -> tf.Tensor:
    """A random-resized crop taken while decoding: float32 [size, size, channels] in [0, 255].

    For JPEGs only the crop window is decoded (``decode_and_crop_jpeg``), so a full-resolution photo
    is not decoded and then mostly thrown away (the TPU ImageNet input pipelines do the same); other
    formats are decoded, then cropped. The window is Inception-style: area in ``scale`` of the image,
    aspect ratio in ``ratio``, the whole image when 10 draws fail.
    """
    is_jpeg = tf.io.is_jpeg(encoded)
    shape = tf.cond(is_jpeg, lambda: tf.io.extract_jpeg_shape(encoded),
                    lambda: tf.shape(tf.io.decode_image(encoded, channels=channels, expand_animations=False)))
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        shape, tf.zeros([1, 0, 4]), seed=seed, aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    top, left = begin[0], begin[1]
    height, width = crop_size[0], crop_size[1]

    def jpeg_window():
        image = tf.io.decode_and_crop_jpeg(encoded, tf.stack([top, left, height, width]), channels=3)
        return image if channels == 3 else tf.image.rgb_to_grayscale(image)

    def decoded_window():
        return decode_image(encoded, channels)[top:top + height, left:left + width]

    image = tf.ensure_shape(tf.cond(is_jpeg, jpeg_window, decoded_window), [None, None, channels])
    return tf.round(resize(image, size, "squash"))
