"""Inception-ResNet-v2 (Szegedy et al. 2017) from keras.applications: the "squeeze" teacher.

We compose keras.applications rather than reimplement it (DESIGN.md convention 5). The
application expects pixels in [-1, 1] ("tf" preprocessing), so the builder puts that
rescaling inside the model and registers it as ``input_scale="raw"``: it takes [0, 255] pixels.
Weights are random (``weights=None``) or a local ``.h5``/``.weights.h5`` file; never downloaded.
"""

import os

import keras

from keras_fgvc.models.registry import input_channels, register_backbone

# keras.applications refuses smaller inputs for this network (its stem needs 75 px).
INCEPTION_RESNET_MIN_SIZE = 75


@register_backbone("inception_resnet_v2", input_scale="raw")
def inception_resnet_v2(input_shape, img_channels=None, weights=None):
    """Stride-32 feature map (1536 channels) of Inception-ResNet-v2.

    Args:
        input_shape: ``(height, width)`` or ``(height, width, channels)``, each side >= 75.
        img_channels: input channels (1 for greyscale; only with ``weights=None``); must agree with
            ``input_shape`` when both give them.
        weights: None for random init or the path of a local weights file (never a download).

    Example:
        >>> teacher = inception_resnet_v2((299, 299, 3), weights="/data/irv2_notop.weights.h5")
    """
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"Inception-ResNet-v2 weights file not found: {weights} (nothing is downloaded)")
    shape = tuple(input_shape[:2]) + (input_channels(input_shape, img_channels),)
    known_sides = [s for s in shape[:2] if s is not None]
    if known_sides and min(known_sides) < INCEPTION_RESNET_MIN_SIZE:
        raise ValueError(f"Inception-ResNet-v2 needs inputs of at least {INCEPTION_RESNET_MIN_SIZE} px, got {shape}")
    inputs = keras.Input(shape, name="image")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    app = keras.applications.InceptionResNetV2(
        include_top=False, weights=None, input_shape=shape
    )
    if weights is not None:
        app.load_weights(weights)
    return keras.Model(inputs, app(scaled), name="inception_resnet_v2")
