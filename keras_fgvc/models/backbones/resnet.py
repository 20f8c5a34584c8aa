"""ResNet family for VIPriors: ResNet, SE-ResNet, ResNeXt, SE-ResNeXt and ResNeSt from one table.

Every variant is a row of ``RESNET_CFG``; one bottleneck function reads the row's switches:
  - ``groups`` / ``base_width``: grouped 3x3 conv (ResNeXt, Xie et al. 2017; 32x4d = 32 groups
    of 4 channels per 64 planes);
  - ``se``: squeeze-excitation after the last BN (Hu et al. 2018, reduction 16);
  - ``radix`` > 1: split-attention 3x3 conv (ResNeSt, Zhang et al. 2020) with ``avd`` (3x3
    average-pool downsampling after it) and ``avg_down`` (average-pool shortcut);
  - ``stem_width``: 0 = the 7x7 stem, else the deep 3x3x3 stem of ResNet-D / ResNeSt.
With ``width=1`` the parameter counts equal torchvision/timm for 1000 classes (resnet50 25,557,032;
resnext50_32x4d 25,028,904; seresnext50_32x4d 27,559,896; resnest50d 27,483,240).
"""

import keras
from keras import layers, ops

from keras_fgvc.models.registry import input_channels, register_backbone

_BASE = dict(depths=(3, 4, 6, 3), groups=1, base_width=64, se=False, radix=1, stem_width=0,
             avg_down=False, avd=False)
_DEEP101 = (3, 4, 23, 3)

RESNET_CFG = {
    "resnet50": dict(_BASE),
    "resnet101": dict(_BASE, depths=_DEEP101),
    "seresnet50": dict(_BASE, se=True),
    "resnext50_32x4d": dict(_BASE, groups=32, base_width=4),
    "seresnext50_32x4d": dict(_BASE, groups=32, base_width=4, se=True),
    "seresnext101_32x4d": dict(_BASE, depths=_DEEP101, groups=32, base_width=4, se=True),
    "resnest50d": dict(_BASE, radix=2, stem_width=32, avg_down=True, avd=True),
    "resnest101e": dict(_BASE, depths=_DEEP101, radix=2, stem_width=64, avg_down=True, avd=True),
}
RESNET_PLANES = (64, 128, 256, 512)
RESNET_EXPANSION = 4
_BN = dict(momentum=0.9, epsilon=1e-5)


def _round8(value, minimum=8):
    return max(minimum, int(value + 4) // 8 * 8)


def _conv_bn(x, filters, kernel, strides=1, groups=1, relu=True, name=""):
    x = layers.Conv2D(filters, kernel, strides, padding="same", groups=groups, use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


@keras.saving.register_keras_serializable(package="keras_fgvc")
class SplitAttention(keras.layers.Layer):
    """ResNeSt split-attention conv: ``radix`` grouped-conv splits mixed by a softmax over splits.

    Args:
        filters: output channels.
        kernel_size: spatial size of the grouped conv.
        strides: its stride.
        groups: cardinality (groups inside each split).
        radix: number of splits; 1 reduces to a sigmoid-gated (SE-like) grouped conv.
        reduction: attention bottleneck = max(32, in_channels * radix / reduction) (paper: 4).
        **kwargs: forwarded to ``keras.layers.Layer``.

    Example:
        >>> y = SplitAttention(64, radix=2)(x)  # x: (batch, h, w, c)
    """

    def __init__(self, filters, kernel_size=3, strides=1, groups=1, radix=2, reduction=4, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.groups = groups
        self.radix = radix
        self.reduction = reduction
        self.conv = layers.Conv2D(filters * radix, kernel_size, strides, padding="same",
                                  groups=groups * radix, use_bias=False, name="conv")
        self.bn = layers.BatchNormalization(**_BN, name="bn")
        self.attention_bn = layers.BatchNormalization(**_BN, name="attention_bn")

    def build(self, input_shape):
        attention = _round8(input_shape[-1] * self.radix / self.reduction, minimum=32)
        self.fc1 = layers.Conv2D(attention, 1, groups=self.groups, name="fc1")
        self.fc2 = layers.Conv2D(self.filters * self.radix, 1, groups=self.groups, name="fc2")
        self.conv.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.filters * self.radix,))
        self.fc1.build((None, 1, 1, self.filters))
        self.attention_bn.build((None, 1, 1, attention))
        self.fc2.build((None, 1, 1, attention))

    def call(self, x, training=None):
        x = ops.relu(self.bn(self.conv(x), training=training))
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        splits = ops.reshape(x, (-1, h, w, self.radix, self.filters))
        pooled = ops.mean(ops.sum(splits, axis=3), axis=(1, 2), keepdims=True)
        a = ops.relu(self.attention_bn(self.fc1(pooled), training=training))
        a = self.fc2(a)  # (batch, 1, 1, radix * filters), ordered (groups, radix, filters / groups)
        if self.radix > 1:
            a = ops.reshape(a, (-1, self.groups, self.radix, self.filters // self.groups))
            a = ops.softmax(a, axis=2)
            a = ops.transpose(a, (0, 2, 1, 3))
            a = ops.reshape(a, (-1, 1, 1, self.radix, self.filters))
        else:
            a = ops.reshape(ops.sigmoid(a), (-1, 1, 1, 1, self.filters))
        return ops.sum(splits * a, axis=3)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)[:-1] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "groups": self.groups, "radix": self.radix, "reduction": self.reduction,
        })
        return config


def _squeeze_excite(x, name):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(_round8(channels / 16), 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def bottleneck(x, planes, strides, cfg, name):
    """One bottleneck residual block; ``cfg`` is a ``RESNET_CFG`` row."""
    out = planes * RESNET_EXPANSION
    inner = max(1, int(planes * cfg["base_width"] / 64)) * cfg["groups"]
    shortcut = x
    y = _conv_bn(x, inner, 1, name=f"{name}_reduce")
    if cfg["radix"] > 1:
        # avd: downsample with a 3x3 average pool after the attention conv instead of a strided conv.
        conv_stride = 1 if cfg["avd"] else strides
        y = SplitAttention(inner, 3, conv_stride, cfg["groups"], cfg["radix"], name=f"{name}_splat")(y)
        if cfg["avd"] and strides > 1:
            y = layers.AveragePooling2D(3, strides, padding="same", name=f"{name}_avd")(y)
    else:
        y = _conv_bn(y, inner, 3, strides, groups=cfg["groups"], name=f"{name}_grouped")
    y = _conv_bn(y, out, 1, relu=False, name=f"{name}_expand")
    if cfg["se"]:
        y = _squeeze_excite(y, name=f"{name}_se")
    if strides > 1 or x.shape[-1] != out:
        if cfg["avg_down"] and strides > 1:
            shortcut = layers.AveragePooling2D(strides, strides, padding="same", name=f"{name}_down_pool")(x)
            shortcut = _conv_bn(shortcut, out, 1, relu=False, name=f"{name}_down")
        else:
            shortcut = _conv_bn(x, out, 1, strides, relu=False, name=f"{name}_down")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def ResNet(variant="resnet50", num_classes=1000, img_channels=3, input_shape=None, include_top=True,
           width=1.0, name=None):
    """A ``RESNET_CFG`` variant as a classifier, or its stride-32 feature map.

    Args:
        variant: a key of ``RESNET_CFG``.
        num_classes: classifier outputs (logits, no softmax).
        img_channels: input channels (1 for greyscale).
        input_shape: ``(height, width)`` or ``(height, width, channels)``; None = any size.
        include_top: add global pooling + Dense classifier.
        width: multiplier on every stage's planes and the stem (1.0 = published; small values
            build structurally identical toy models for tests).
        name: model name.

    Returns:
        ``keras.Model`` from standardised float images to logits (float32) or a 4-D feature map.

    Example:
        >>> model = ResNet("seresnext101_32x4d", num_classes=1000, input_shape=(224, 224))
    """
    if variant not in RESNET_CFG:
        raise ValueError(f"unknown ResNet variant {variant!r}; known: {sorted(RESNET_CFG)}")
    cfg = RESNET_CFG[variant]
    spatial = tuple(input_shape[:2]) if input_shape is not None else (None, None)
    inputs = keras.Input(spatial + (img_channels,), name="image")
    if cfg["stem_width"]:
        stem = max(8, int(cfg["stem_width"] * width))
        x = _conv_bn(inputs, stem, 3, 2, name="stem1")
        x = _conv_bn(x, stem, 3, name="stem2")
        x = _conv_bn(x, 2 * stem, 3, name="stem3")
    else:
        x = _conv_bn(inputs, max(8, int(64 * width)), 7, 2, name="stem")
    x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (planes, depth) in enumerate(zip(RESNET_PLANES, cfg["depths"])):
        planes = max(2, int(planes * width))
        for i in range(depth):
            strides = 2 if i == 0 and stage > 0 else 1
            x = bottleneck(x, planes, strides, cfg, name=f"stage{stage + 1}_block{i + 1}")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, x, name=name or variant)


def _register(variant):
    @register_backbone(variant, input_scale="standardize")
    def build(input_shape, img_channels=None, width=1.0):
        """Stride-32 feature map of the ``RESNET_CFG`` row ``variant``.

        Args:
            input_shape: ``(height, width, channels)``; height/width may be None.
            img_channels: input channels; must agree with ``input_shape`` when both give them.
            width: multiplier on every stage's planes and the stem (1.0 = published; e.g. 1/16 builds
                a structurally identical toy model for tests).
        """
        return ResNet(variant, img_channels=input_channels(input_shape, img_channels), input_shape=input_shape,
                      include_top=False, width=width)

    return build


for _variant in RESNET_CFG:
    _register(_variant)
