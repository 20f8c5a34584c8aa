"""Robust image decoding for tf.data: any of JPEG/PNG/GIF/BMP, greyscale or RGBA, to a fixed
channel count (greyscale images are common in Stanford Cars; PNG masks carry alpha)."""

import tensorflow as tf


def decode_image(encoded: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decode one encoded image to uint8 [H, W, channels]."""
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
    return tf.ensure_shape(image, [None, None, channels])


def decode_and_resize(encoded: tf.Tensor, size: int, channels: int = 3) -> tf.Tensor:
    """Decode and resize to float32 [size, size, channels] with values in [0, 255]."""
    image = decode_image(encoded, channels)
    resized = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def model_pixels(encoded: tf.Tensor, size: int, channels: int = 3) -> tf.Tensor:
    """The exact pixels every model sees: decoded, resized, rounded to integers in [0, 255].

    Training caches these as uint8 and exported models compute them from the raw bytes, so both
    paths feed the network identical values.
    """
    return tf.round(decode_and_resize(encoded, size, channels))
