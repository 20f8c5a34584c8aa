"""Geometric augmentations that Keras core lacks in one resampling step.

``RandomResizedCrop`` follows torchvision/albumentations (area and aspect-ratio ranges, ten tries,
then a centre-crop fallback). ``RandomAffine`` folds rotation, translation, scale and shear into
one matrix so an image is resampled once (composing the four core layers would blur it four times).
``ShiftScaleRotate`` is albumentations' parameterisation of the same affine family.
"""

import math

import keras
import tensorflow as tf

from keras_fgvc.augment.base import BatchAugmentation
from keras_fgvc.augment.ops import rotation_matrix, transform_about_centre

_FILL_MODES = {"constant": "CONSTANT", "reflect": "REFLECT", "wrap": "WRAP", "nearest": "NEAREST"}
_INTERPOLATIONS = {"bilinear": "BILINEAR", "nearest": "NEAREST"}


def _pair(value, name):
    pair = tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else (value, value)))
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a number or an increasing pair, got {value!r}")
    return pair


@keras.saving.register_keras_serializable(package="keras_fgvc")
class RandomResizedCrop(BatchAugmentation):
    """Crop a random area/aspect-ratio region of each image and resize it.

    Args:
        height, width: output size; ``None`` keeps the input size (so a preset is size-agnostic).
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height), sampled log-uniformly.
        interpolation: "bilinear" or "nearest".
        horizontal_flip: probability of mirroring the crop left-right. The same distribution as a
            ``RandomFlip("horizontal")`` step after the crop, at no cost: the crop box is mirrored
            instead of the image (a separate flip is another pass over the batch, ~12 ms per
            32x224x224 batch here).
        rate: probability that an image is transformed at all, crop and flip (albumentations' ``p``);
            the other images are resized whole (corner-aligned, as the crops are; ``training=False``
            uses ``tf.image.resize``), so they come out unchanged when the output size is the input size.
        seed, **kwargs: see ``BatchAugmentation``. With ``training=False`` the whole image is resized.

    Example:
        >>> layer = RandomResizedCrop(224, 224, scale=(0.08, 1.0), horizontal_flip=0.5)
    """

    _ATTEMPTS = 10  # torchvision's number of tries before the centre-crop fallback
    # The base class can skip the images that drew "keep" only when the output has the input's size;
    # a not-cropped image here is instead a whole-image box (exactly the image at the same size), so
    # every image of the batch goes through one crop_and_resize.
    _rate_in_parameters = True

    def __init__(self, height=None, width=None, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation="bilinear", horizontal_flip=0.0, rate=1.0, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0.0 <= float(horizontal_flip) <= 1.0:
            raise ValueError(f"horizontal_flip must be a probability in [0, 1], got {horizontal_flip}")
        self.height = height
        self.width = width
        self.scale = _pair(scale, "scale")
        self.ratio = _pair(ratio, "ratio")
        self.interpolation = interpolation
        self.horizontal_flip = float(horizontal_flip)

    def _output_size(self, shape):
        return tf.stack([shape[1] if self.height is None else self.height,
                         shape[2] if self.width is None else self.width])

    def sample_parameters(self, shape):
        batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        tries = [batch, self._ATTEMPTS]
        area = height * width * self.uniform(tries, *self.scale)
        aspect = tf.exp(self.uniform(tries, math.log(self.ratio[0]), math.log(self.ratio[1])))
        crop_w = tf.round(tf.sqrt(area * aspect))
        crop_h = tf.round(tf.sqrt(area / aspect))
        valid = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
        first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
        found = tf.reduce_any(valid, axis=1)
        # Fallback: the largest centred crop whose ratio is clipped into range.
        image_ratio = width / height
        fallback_w = tf.where(image_ratio < self.ratio[0], width,
                              tf.where(image_ratio > self.ratio[1], tf.round(height * self.ratio[1]), width))
        fallback_h = tf.where(image_ratio < self.ratio[0], tf.round(width / self.ratio[0]), height)
        crop_w = tf.where(found, tf.gather(crop_w, first, batch_dims=1), fallback_w)
        crop_h = tf.where(found, tf.gather(crop_h, first, batch_dims=1), fallback_h)
        top = tf.where(found, tf.floor(self.uniform([batch]) * (height - crop_h + 1)), tf.floor((height - crop_h) / 2))
        left = tf.where(found, tf.floor(self.uniform([batch]) * (width - crop_w + 1)), tf.floor((width - crop_w) / 2))
        cropped = None
        if self.rate < 1.0:  # drawn only then, so seeded streams at rate 1 are unchanged
            cropped = self.uniform([batch]) < self.rate
            top, left = tf.where(cropped, top, 0.0), tf.where(cropped, left, 0.0)
            crop_h, crop_w = tf.where(cropped, crop_h, height), tf.where(cropped, crop_w, width)
        parameters = {name: tf.cast(v, tf.int32) for name, v in
                      (("top", top), ("left", left), ("crop_height", crop_h), ("crop_width", crop_w))}
        if self.horizontal_flip > 0.0:
            flip = self.uniform([batch]) < self.horizontal_flip
            parameters["flip"] = flip if cropped is None else flip & cropped
        return parameters

    def apply_parameters(self, images, parameters):
        shape = tf.shape(images)
        last_row = tf.cast(tf.maximum(shape[1] - 1, 1), tf.float32)
        last_col = tf.cast(tf.maximum(shape[2] - 1, 1), tf.float32)
        top, left = tf.cast(parameters["top"], tf.float32), tf.cast(parameters["left"], tf.float32)
        bottom = top + tf.cast(parameters["crop_height"], tf.float32) - 1.0
        right = left + tf.cast(parameters["crop_width"], tf.float32) - 1.0
        if "flip" in parameters:  # a box whose left edge lies right of its right edge is sampled mirrored
            left, right = (tf.where(parameters["flip"], right, left), tf.where(parameters["flip"], left, right))
        # crop_and_resize maps box edges onto the first/last output pixel centres.
        boxes = tf.stack([top / last_row, left / last_col, bottom / last_row, right / last_col], axis=1)
        return tf.image.crop_and_resize(images, boxes, tf.range(shape[0]), self._output_size(shape),
                                        method=self.interpolation)

    def call(self, images, training=True):
        if training or (self.height is None and self.width is None):
            return super().call(images, training=training)
        images = tf.convert_to_tensor(images)
        single = images.shape.rank == 3
        x = tf.cast(images[None] if single else images, tf.float32)
        y = tf.cast(tf.image.resize(x, self._output_size(tf.shape(x)), method=self.interpolation), self.compute_dtype)
        return y[0] if single else y

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        rows, cols = (-3, -2)
        shape[rows] = shape[rows] if self.height is None else self.height
        shape[cols] = shape[cols] if self.width is None else self.width
        return tuple(shape)

    def get_config(self):
        config = {**super().get_config(), "height": self.height, "width": self.width, "scale": list(self.scale),
                  "ratio": list(self.ratio), "interpolation": self.interpolation,
                  "horizontal_flip": self.horizontal_flip}
        return config


@keras.saving.register_keras_serializable(package="keras_fgvc")
class RandomAffine(BatchAugmentation):
    """One random affine warp per image (torchvision ``RandomAffine`` semantics).

    Args:
        degrees: rotation range; a number d means [-d, d].
        translate: maximum shift as a fraction of width (x) and height (y); a number or an (x, y) pair.
        scale: range of the isotropic scale factor.
        shear: x-shear angle range in degrees; a number s means [-s, s].
        fill_mode: "constant", "reflect", "wrap" or "nearest".
        fill_value: value for ``fill_mode="constant"``.
        interpolation: "bilinear" or "nearest".
        rate, seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = RandomAffine(degrees=25, translate=0.1, scale=(0.9, 1.1), shear=8)  # the cars recipe
    """

    def __init__(self, degrees=0.0, translate=0.0, scale=(1.0, 1.0), shear=0.0, fill_mode="constant",
                 fill_value=0.0, interpolation="bilinear", rate=1.0, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if fill_mode not in _FILL_MODES or interpolation not in _INTERPOLATIONS:
            raise ValueError(f"fill_mode must be one of {sorted(_FILL_MODES)} and interpolation one of "
                             f"{sorted(_INTERPOLATIONS)}; got {fill_mode!r}, {interpolation!r}")
        self.degrees = degrees
        self.translate = translate
        self.scale = scale
        self.shear = shear
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)
        self.interpolation = interpolation

    def _symmetric(self, value, name):
        return _pair(value, name) if isinstance(value, (tuple, list)) else (-float(value), float(value))

    def sample_parameters(self, shape):
        batch = [shape[0]]
        shift_x, shift_y = (self.translate if isinstance(self.translate, (tuple, list))
                            else (self.translate, self.translate))
        return {
            "angle": self.uniform(batch, *self._symmetric(self.degrees, "degrees")),
            "shift_x": self.uniform(batch, -float(shift_x), float(shift_x)),
            "shift_y": self.uniform(batch, -float(shift_y), float(shift_y)),
            "scale": self.uniform(batch, *_pair(self.scale, "scale")),
            "shear": self.uniform(batch, *self._symmetric(self.shear, "shear")),
        }

    def apply_parameters(self, images, parameters):
        shape = tf.shape(images)
        shear = tf.tan(parameters["shear"] * (math.pi / 180.0))
        ones, zeros = tf.ones_like(shear), tf.zeros_like(shear)
        shear_matrix = tf.stack([tf.stack([ones, shear], -1), tf.stack([zeros, ones], -1)], -2)
        forward = parameters["scale"][:, None, None] * tf.matmul(rotation_matrix(parameters["angle"]), shear_matrix)
        translation = tf.stack([parameters["shift_x"] * tf.cast(shape[2], tf.float32),
                                parameters["shift_y"] * tf.cast(shape[1], tf.float32)], axis=-1)
        return transform_about_centre(images, forward, translation, fill_mode=_FILL_MODES[self.fill_mode],
                                      fill_value=self.fill_value, interpolation=_INTERPOLATIONS[self.interpolation])

    def get_config(self):
        return {**super().get_config(), "degrees": self.degrees, "translate": self.translate, "scale": self.scale,
                "shear": self.shear, "fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="keras_fgvc")
class ShiftScaleRotate(RandomAffine):
    """albumentations ``ShiftScaleRotate``: shift, scale 1 +- limit, rotation, no shear.

    Args:
        shift_limit: maximum shift as a fraction of each side.
        scale_limit: scale is drawn from [1 - scale_limit, 1 + scale_limit].
        rotate_limit: rotation range in degrees, [-limit, limit].
        fill_mode: albumentations reflects the border by default.
        rate: albumentations' ``p`` (0.5 there; the Hotel-ID recipe uses 0.3).

    Example:
        >>> layer = ShiftScaleRotate(rate=0.3)
    """

    def __init__(self, shift_limit=0.0625, scale_limit=0.1, rotate_limit=45.0, fill_mode="reflect", fill_value=0.0,
                 interpolation="bilinear", rate=0.5, seed=None, **kwargs):
        super().__init__(degrees=rotate_limit, translate=shift_limit, scale=(1.0 - scale_limit, 1.0 + scale_limit),
                         shear=0.0, fill_mode=fill_mode, fill_value=fill_value, interpolation=interpolation,
                         rate=rate, seed=seed, **kwargs)
        self.shift_limit = shift_limit
        self.scale_limit = scale_limit
        self.rotate_limit = rotate_limit

    def get_config(self):
        config = super().get_config()
        for key in ("degrees", "translate", "scale", "shear"):
            config.pop(key)
        return {**config, "shift_limit": self.shift_limit, "scale_limit": self.scale_limit,
                "rotate_limit": self.rotate_limit}
