"""Batched image operations with a per-image magnitude, shared by RandAugment and AutoAugment.

Every op takes float32 images [n, H, W, C] in [0, 255], a normalised magnitude ``t`` in [0, 1]
per image and a sign (+1/-1) per image, and returns images of the same shape. Ranges follow
Cubuk et al., "AutoAugment" (CVPR 2019), Table 1 / Appendix: rotate +-30 deg, shear +-0.3,
translate +-150/331 of the side, colour/contrast/brightness/sharpness factor 0.1..1.9,
posterize 4..8 bits, solarize threshold 0..256. RandAugment (Cubuk et al. 2020) reuses them.
"""

import math

import tensorflow as tf

# Geometric ops fill uncovered pixels with mid grey, as the reference implementations do.
GEOMETRIC_FILL = 128.0
# Geometric ops take an ``interpolation`` keyword ("NEAREST" or "BILINEAR"). Nearest is the default
# of the original AutoAugment code (PIL's ``rotate``/``transform`` default resample) and of
# torchvision's AutoAugment/RandAugment; it is also ~1.3x faster than bilinear here.
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
# ITU-R 601-2 luma, the weights PIL's ``convert("L")`` uses for ImageEnhance.Color/Contrast.
LUMA = (0.299, 0.587, 0.114)


def _column(v):
    return tf.reshape(tf.cast(v, tf.float32), [-1, 1, 1, 1])


def transform_about_centre(images, forward, translation, fill_mode="CONSTANT", fill_value=0.0,
                           interpolation="BILINEAR"):
    """Warp each image by ``out = forward @ (in - c) + c + translation`` (c: image centre, xy order).

    Args:
        images: float32 [n, H, W, C].
        forward: [n, 2, 2] linear part acting on (x, y) pixel coordinates.
        translation: [n, 2] shift in pixels (x, y).
        fill_mode: "CONSTANT", "REFLECT", "WRAP" or "NEAREST" (``ImageProjectiveTransformV3``).
    """
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    centre = tf.stack([(width - 1.0) / 2.0, (height - 1.0) / 2.0])[None, :]
    a, b, c, d = forward[:, 0, 0], forward[:, 0, 1], forward[:, 1, 0], forward[:, 1, 1]
    det = a * d - b * c
    inverse = tf.stack([tf.stack([d, -b], -1), tf.stack([-c, a], -1)], -2) / det[:, None, None]
    # The op wants the output->input map: in = inverse @ (out - c - t) + c.
    offset = centre - tf.linalg.matvec(inverse, centre + translation)
    zeros = tf.zeros_like(a)
    transforms = tf.stack(
        [inverse[:, 0, 0], inverse[:, 0, 1], offset[:, 0], inverse[:, 1, 0], inverse[:, 1, 1], offset[:, 1],
         zeros, zeros], axis=-1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=tf.constant(fill_value, tf.float32),
        interpolation=interpolation, fill_mode=fill_mode)


def rotation_matrix(degrees):
    """[n, 2, 2]; positive angles turn the picture counter-clockwise as displayed (y points down)."""
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    return tf.stack([tf.stack([cos, sin], -1), tf.stack([-sin, cos], -1)], -2)


def _blend(degenerate, images, factor):
    # PIL ImageEnhance: factor 0 gives the degenerate image, 1 the original, >1 extrapolates.
    return tf.clip_by_value(degenerate + _column(factor) * (images - degenerate), 0.0, 255.0)


def greyscale(images):
    """Luma [n, H, W, 1] (the channel mean for images that are not RGB)."""
    if images.shape[-1] == 3:
        # A [pixels, 3] x [3] product: ~2x faster than multiplying by a broadcast length-3 vector.
        luma = tf.linalg.matvec(tf.reshape(images, [-1, 3]), tf.constant(LUMA, tf.float32))
        return tf.reshape(luma, tf.concat([tf.shape(images)[:3], [1]], 0))
    return tf.reduce_mean(images, axis=-1, keepdims=True)


def _enhance_factor(t):
    return 0.1 + 1.8 * t


def identity(images, t, sign):
    return images


def auto_contrast(images, t, sign):
    # Per-image, per-channel min/max over the pixels as one [n, H*W, C] reduction, then one affine
    # map (a flat channel keeps offset 0, scale 1) instead of stretching everything and selecting.
    pixels = tf.reshape(images, [tf.shape(images)[0], -1, images.shape[-1]])
    low = tf.reduce_min(pixels, axis=1)[:, None, None, :]
    spread = tf.reduce_max(pixels, axis=1)[:, None, None, :] - low
    scale = tf.where(spread > 0, 255.0 / tf.maximum(spread, 1e-3), 1.0)
    return (images - tf.where(spread > 0, low, 0.0)) * scale


def equalize(images, t, sign):
    """Per-channel histogram equalisation with PIL's ``ImageOps.equalize`` lookup table."""
    shape = tf.shape(images)
    n, height, width, channels = shape[0], shape[1], shape[2], images.shape[-1]
    values = tf.cast(tf.clip_by_value(images, 0.0, 255.0), tf.int32)  # truncation = floor for x >= 0
    # Bin id (image * C + channel) * 256 + value, computed in NHWC order: no transposes (2x faster).
    plane = tf.reshape(tf.range(n)[:, None] * channels + tf.range(channels)[None, :], [n, 1, 1, channels])
    bins = values + 256 * plane
    hist = tf.math.bincount(tf.reshape(bins, [-1]), minlength=n * channels * 256, maxlength=n * channels * 256)
    hist = tf.reshape(hist, [n * channels, 256])
    last_bin = 255 - tf.argmax(tf.reverse(tf.cast(hist > 0, tf.int32), [1]), axis=1, output_type=tf.int32)
    last_count = tf.gather(hist, last_bin, batch_dims=1)
    step = (height * width - last_count) // 255
    cumulative = tf.cumsum(hist, axis=1, exclusive=True)
    lut = tf.clip_by_value((cumulative + (step // 2)[:, None]) // tf.maximum(step, 1)[:, None], 0, 255)
    lut = tf.where((step > 0)[:, None], lut, tf.range(256)[None, :])  # PIL leaves such a plane as it is
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), bins), tf.float32)


def invert(images, t, sign):
    return 255.0 - images


def rotate(images, t, sign, interpolation="NEAREST"):
    n = tf.shape(images)[0]
    return transform_about_centre(images, rotation_matrix(30.0 * t * sign), tf.zeros([n, 2]),
                                  fill_value=GEOMETRIC_FILL, interpolation=interpolation)


def _shear(images, amount, axis, interpolation):
    n = tf.shape(images)[0]
    ones, zeros = tf.ones_like(amount), tf.zeros_like(amount)
    row0 = tf.stack([ones, amount if axis == "x" else zeros], -1)
    row1 = tf.stack([amount if axis == "y" else zeros, ones], -1)
    return transform_about_centre(images, tf.stack([row0, row1], -2), tf.zeros([n, 2]), fill_value=GEOMETRIC_FILL,
                                  interpolation=interpolation)


def shear_x(images, t, sign, interpolation="NEAREST"):
    return _shear(images, 0.3 * t * sign, "x", interpolation)


def shear_y(images, t, sign, interpolation="NEAREST"):
    return _shear(images, 0.3 * t * sign, "y", interpolation)


def _translate(images, fraction, axis, interpolation):
    n = tf.shape(images)[0]
    side = tf.cast(tf.shape(images)[2 if axis == "x" else 1], tf.float32)
    shift = fraction * side
    zeros = tf.zeros_like(shift)
    translation = tf.stack([shift, zeros] if axis == "x" else [zeros, shift], -1)
    return transform_about_centre(images, tf.eye(2, batch_shape=[n]), translation, fill_value=GEOMETRIC_FILL,
                                  interpolation=interpolation)


def translate_x(images, t, sign, interpolation="NEAREST"):
    return _translate(images, (150.0 / 331.0) * t * sign, "x", interpolation)


def translate_y(images, t, sign, interpolation="NEAREST"):
    return _translate(images, (150.0 / 331.0) * t * sign, "y", interpolation)


def solarize(images, t, sign):
    threshold = _column(256.0 * t)
    return tf.where(images >= threshold, 255.0 - images, images)


def posterize(images, t, sign):
    bits = tf.round(4.0 + 4.0 * t)
    bucket = _column(tf.pow(2.0, 8.0 - bits))
    return tf.floor(tf.floor(images) / bucket) * bucket


def colour(images, t, sign):
    return _blend(greyscale(images), images, _enhance_factor(t))


def contrast(images, t, sign):
    mean = tf.reduce_mean(greyscale(images), axis=[1, 2, 3], keepdims=True)
    return _blend(mean, images, _enhance_factor(t))


def brightness(images, t, sign):
    return _blend(tf.zeros_like(images), images, _enhance_factor(t))


def sharpness(images, t, sign):
    """PIL ImageEnhance.Sharpness: blend with a 3x3 smoothed copy whose border keeps the original."""
    channels = images.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID")
    smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
    shape = tf.shape(images)
    interior = tf.pad(tf.ones([shape[1] - 2, shape[2] - 2], tf.bool), [[1, 1], [1, 1]])[None, :, :, None]
    degenerate = tf.where(interior, smooth, images)
    return _blend(degenerate, images, _enhance_factor(t))


# Name -> op. Order is part of the public contract of RandAugment (its op ids index this list).
OPS = {
    "Identity": identity,
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Rotate": rotate,
    "Solarize": solarize,
    "Color": colour,
    "Posterize": posterize,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Invert": invert,
}
