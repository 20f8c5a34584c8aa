"""SqueezeNext (Gholami et al., "SqueezeNext: Hardware-Aware Neural Network Design", CVPRW 2018).

Each unit squeezes the channels twice with 1x1 convs, runs a separable 1x3 then 3x1 conv and
expands back with a 1x1 conv, around a residual connection (Fig. 2 of the paper). Every conv
keeps its bias and is followed by BatchNorm + ReLU, as in the authors' Caffe prototxts; with that,
1.0-SqNxt-23v5 has 921,816 and 2.0-SqNxt-23v5 3,366,344 trainable parameters at 1000 classes.
"""

import keras
from keras import layers

from keras_fgvc.models.registry import input_channels, register_backbone

SQUEEZENEXT_STAGE_CHANNELS = (32, 64, 128, 256)
SQUEEZENEXT_STEM = 64
SQUEEZENEXT_FINAL = 128

# Units per stage for (depth, version). v5 moves blocks into the low-resolution stages, which the
# paper's hardware simulation shows is faster at the same accuracy (Sec. 5, Table 3).
SQUEEZENEXT_UNITS = {
    (23, "v1"): (6, 6, 8, 1),
    (23, "v5"): (2, 4, 14, 1),
}

# Registered variants: name -> (width, depth, version).
SQUEEZENEXT_VARIANTS = {
    "squeezenext_23_100": (1.0, 23, "v1"),
    "squeezenext_23_200": (2.0, 23, "v1"),
    "squeezenext_23v5_100": (1.0, 23, "v5"),
    "squeezenext_23v5_200": (2.0, 23, "v5"),
}

_BN = dict(momentum=0.9, epsilon=1e-5)


def _conv_bn_relu(x, filters, kernel, strides=1, name=""):
    x = layers.Conv2D(filters, kernel, strides, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def squeezenext_unit(x, filters, strides, name="unit"):
    """One SqueezeNext unit; the squeeze factor depends on whether the unit downsamples.

    A downsampling unit keeps the full input width in its first 1x1 conv (it carries the
    stride); a unit that narrows the channels squeezes by 4; otherwise by 2.
    """
    in_channels = x.shape[-1]
    if strides > 1:
        reduction, project = 1, True
    elif in_channels > filters:
        reduction, project = 4, True
    else:
        reduction, project = 2, in_channels != filters
    squeezed = in_channels // reduction
    shortcut = _conv_bn_relu(x, filters, 1, strides, name=f"{name}_shortcut") if project else x
    y = _conv_bn_relu(x, squeezed, 1, strides, name=f"{name}_squeeze1")
    y = _conv_bn_relu(y, squeezed // 2, 1, name=f"{name}_squeeze2")
    y = _conv_bn_relu(y, squeezed, (1, 3), name=f"{name}_sep1x3")
    y = _conv_bn_relu(y, squeezed, (3, 1), name=f"{name}_sep3x1")
    y = _conv_bn_relu(y, filters, 1, name=f"{name}_expand")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def SqueezeNext(
    width=1.0,
    depth=23,
    version="v5",
    num_classes=1000,
    img_channels=3,
    input_shape=None,
    include_top=True,
    name=None,
):
    """SqueezeNext classifier, or its final feature map with ``include_top=False``.

    Args:
        width: channel multiplier (1.0 and 2.0 in the paper).
        depth: network depth; with ``version`` selects the units per stage.
        version: "v1" (the plain SqNxt-23) or "v5" (the hardware-tuned SqNxt-23v5).
        num_classes: classifier outputs (logits, no softmax).
        img_channels: input channels (1 for greyscale).
        input_shape: ``(height, width)`` or ``(height, width, channels)``; None = any size.
        include_top: add global pooling + Dense classifier.
        name: model name.

    Returns:
        ``keras.Model`` from standardised float images to logits (float32) or a 4-D feature map.

    Example:
        >>> student = SqueezeNext(width=2.0, depth=23, version="v5", num_classes=200)
    """
    try:
        units = SQUEEZENEXT_UNITS[(depth, version)]
    except KeyError:
        raise ValueError(
            f"no SqueezeNext with depth={depth}, version={version!r}; known: {sorted(SQUEEZENEXT_UNITS)}"
        ) from None
    spatial = tuple(input_shape[:2]) if input_shape is not None else (None, None)
    inputs = keras.Input(spatial + (img_channels,), name="image")
    x = _conv_bn_relu(inputs, int(SQUEEZENEXT_STEM * width), 7, strides=2, name="stem")
    x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (channels, count) in enumerate(zip(SQUEEZENEXT_STAGE_CHANNELS, units)):
        for i in range(count):
            strides = 2 if i == 0 and stage > 0 else 1
            x = squeezenext_unit(x, int(channels * width), strides, name=f"stage{stage + 1}_unit{i + 1}")
    x = _conv_bn_relu(x, int(SQUEEZENEXT_FINAL * width), 1, name="final")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    default_name = f"squeezenext_{depth}{'' if version == 'v1' else version}_{int(round(width * 100)):03d}"
    return keras.Model(inputs, x, name=name or default_name)


def _register(name, width, depth, version):
    # width, depth and version are the variant itself (its registry name), so not options.
    @register_backbone(name, input_scale="standardize")
    def build(input_shape, img_channels=None):
        """Final feature map (stride 32) of SqueezeNext-``depth````version`` at ``width``.

        Args:
            input_shape: ``(height, width, channels)``; height/width may be None.
            img_channels: input channels; must agree with ``input_shape`` when both give them.
        """
        return SqueezeNext(
            width=width,
            depth=depth,
            version=version,
            img_channels=input_channels(input_shape, img_channels),
            input_shape=input_shape,
            include_top=False,
            name=name,
        )

    return build


for _name, (_width, _depth, _version) in SQUEEZENEXT_VARIANTS.items():
    _register(_name, _width, _depth, _version)
