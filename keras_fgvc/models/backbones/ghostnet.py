"""GhostNet (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

A Ghost module makes half of its output channels with an ordinary 1x1 conv and the other half
with a cheap 3x3 depthwise conv of the first half. Ghost bottlenecks stack two modules, with a
stride-2 depthwise conv between them where the resolution drops and optional squeeze-excite.
Layer widths and rounding follow timm's ``ghostnet_050/100/130`` so trainable parameter counts
match exactly (2,587,292 / 5,182,508 / 7,358,820 at 1000 classes).
"""


import keras
from keras import layers

from keras_fgvc.models.registry import input_channels, register_backbone

# One row per bottleneck: (kernel, expansion channels, output channels, SE ratio, stride).
# Table 1 of the paper; the 16 rows give 141M MACs at 1.0x, 224 px.
GHOSTNET_CFG = (
    (3, 16, 16, 0.0, 1),
    (3, 48, 24, 0.0, 2),
    (3, 72, 24, 0.0, 1),
    (5, 72, 40, 0.25, 2),
    (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0.0, 2),
    (3, 200, 80, 0.0, 1),
    (3, 184, 80, 0.0, 1),
    (3, 184, 80, 0.0, 1),
    (3, 480, 112, 0.25, 1),
    (3, 672, 112, 0.25, 1),
    (5, 672, 160, 0.25, 2),
    (5, 960, 160, 0.0, 1),
    (5, 960, 160, 0.25, 1),
    (5, 960, 160, 0.0, 1),
    (5, 960, 160, 0.25, 1),
)
GHOSTNET_STEM = 16
GHOSTNET_LAST_CONV = 960

# Registered variants: name -> width multiplier.
GHOSTNET_WIDTHS = {"ghostnet_050": 0.5, "ghostnet_100": 1.0, "ghostnet_130": 1.3}

_BN = dict(momentum=0.9, epsilon=1e-5)  # PyTorch BatchNorm2d defaults, as in the reference


def make_divisible(value, divisor=4, round_limit=0.9):
    """Round ``value`` to a multiple of ``divisor`` without dropping more than 10% (timm rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def _conv_bn(x, filters, kernel, strides=1, relu=True, name=""):
    x = layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _depthwise_bn(x, kernel, strides=1, relu=False, name=""):
    x = layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def ghost_module(x, filters, relu=True, name="ghost"):
    """``filters`` output channels: a 1x1 conv makes half, a 3x3 depthwise conv of those the rest.

    The ratio is the paper's s = 2; ``filters`` is always even because widths are multiples of 4.
    """
    if filters % 2:
        raise ValueError(f"ghost_module needs an even channel count, got {filters}")
    primary = _conv_bn(x, filters // 2, 1, relu=relu, name=f"{name}_primary")
    cheap = _depthwise_bn(primary, 3, relu=relu, name=f"{name}_cheap")
    return layers.Concatenate(name=f"{name}_concat")([primary, cheap])


def squeeze_excite(x, ratio, name="se"):
    """SE with a hard-sigmoid gate; reduced width rounded to a multiple of 4 (as in the reference)."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(make_divisible(channels * ratio), 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="hard_sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def ghost_bottleneck(x, mid, out, kernel, strides, se_ratio, name="block"):
    shortcut = x
    x = ghost_module(x, mid, relu=True, name=f"{name}_ghost1")
    if strides > 1:
        x = _depthwise_bn(x, kernel, strides, name=f"{name}_down")
    if se_ratio:
        x = squeeze_excite(x, se_ratio, name=f"{name}_se")
    x = ghost_module(x, out, relu=False, name=f"{name}_ghost2")
    if strides > 1 or shortcut.shape[-1] != out:
        shortcut = _depthwise_bn(shortcut, kernel, strides, name=f"{name}_shortcut_dw")
        shortcut = _conv_bn(shortcut, out, 1, relu=False, name=f"{name}_shortcut_pw")
    return layers.Add(name=f"{name}_add")([x, shortcut])


def GhostNet(
    width=1.0,
    num_classes=1000,
    dropout=0.2,
    out_channels=1280,
    img_channels=3,
    input_shape=None,
    include_top=True,
    name=None,
):
    """GhostNet classifier (or its pre-logits features with ``include_top=False``).

    Args:
        width: channel multiplier (0.5, 1.0, 1.3 are the published variants).
        num_classes: classifier outputs (logits, no softmax).
        dropout: dropout rate before the classifier.
        out_channels: width of the 1x1 conv after global pooling (paper: 1280; the Cars
            thesis used 320).
        img_channels: input channels (1 for greyscale).
        input_shape: ``(height, width)`` or ``(height, width, channels)``; None = any size.
        include_top: add dropout + Dense classifier; otherwise the output is the
            ``out_channels``-d pre-logits vector.
        name: model name.

    Returns:
        ``keras.Model`` from standardised float images to logits (float32) or pre-logits.

    Example:
        >>> model = GhostNet(width=1.0, num_classes=196, out_channels=320, input_shape=(227, 227))
    """
    spatial = tuple(input_shape[:2]) if input_shape is not None else (None, None)
    inputs = keras.Input(spatial + (img_channels,), name="image")
    x = _conv_bn(inputs, make_divisible(GHOSTNET_STEM * width), 3, strides=2, name="stem")
    for i, (kernel, expansion, out, se_ratio, strides) in enumerate(GHOSTNET_CFG):
        x = ghost_bottleneck(
            x,
            make_divisible(expansion * width),
            make_divisible(out * width),
            kernel,
            strides,
            se_ratio,
            name=f"block{i}",
        )
    x = _conv_bn(x, make_divisible(GHOSTNET_LAST_CONV * width), 1, name="last")
    x = layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    # The head conv keeps its bias (it has no BatchNorm) and is not width-scaled, as in the paper.
    x = layers.Conv2D(out_channels, 1, activation="relu", name="head_conv")(x)
    x = layers.Flatten(name="pre_logits")(x)
    if include_top:
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, x, name=name or f"ghostnet_{int(round(width * 100)):03d}")


def _register(name, width):
    # No ``dropout`` option: the backbone stops at the pre-logits vector (include_top=False), where
    # GhostNet's dropout would sit after it, in front of the classifier. That is the neck's job
    # (``model.dropout`` in build_model), so the builder refuses it rather than accept a no-op.
    @register_backbone(name, input_scale="standardize")
    def build(input_shape, img_channels=None, out_channels=1280):
        """Pre-logits features (pool -> 1x1 conv ``out_channels`` + ReLU) of GhostNet-``width``.

        Args:
            input_shape: ``(height, width, channels)``; height/width may be None.
            img_channels: input channels; must agree with ``input_shape`` when both give them.
            out_channels: width of the head conv (paper: 1280; the Cars thesis used 320).
        """
        return GhostNet(
            width=width,
            out_channels=out_channels,
            img_channels=input_channels(input_shape, img_channels),
            input_shape=input_shape,
            include_top=False,
            name=name,
        )

    return build


for _name, _width in GHOSTNET_WIDTHS.items():
    _register(_name, _width)
