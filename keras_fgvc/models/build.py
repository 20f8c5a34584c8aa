"""``build_model(cfg, num_classes)``: inputs -> augmentation -> normalisation -> backbone -> neck -> head.

Every model takes float pixels in [0, 255] (B, S, S, C) and returns
``{"embedding": L2-normalised embedding, "logits": float32 class logits}``; its layers named
``backbone`` (features), ``pre_logits`` and ``embedding`` let a sub-model read any stage.
"""

import keras

from keras_fgvc.augment import presets
from keras_fgvc.models.heads import softmax_head
from keras_fgvc.models.necks import embedding_neck
from keras_fgvc.models.registry import get_backbone


def input_scaling(input_scale, mean, std, channels):
    """The layer that maps [0, 255] pixels to what a backbone expects (None: nothing to do)."""
    if input_scale == "raw":
        return None
    if input_scale == "unit":
        return keras.layers.Rescaling(1.0 / 255, name="to_unit")
    mean = [255.0 * m for m in mean][:channels] if channels > 1 else [255.0 * sum(mean) / len(mean)]
    variance = [(255.0 * s) ** 2 for s in std][:channels] if channels > 1 else [(255.0 * sum(std) / len(std)) ** 2]
    return keras.layers.Normalization(mean=mean, variance=variance, name="standardize")


def build_model(cfg, num_classes: int, channels: int = 3) -> keras.Model:
    """Assemble the model a Config describes.

    Args:
        cfg: a ``keras_fgvc.config.Config`` (reads ``model``, ``data.image_size``, ``augment``).
        num_classes: classes of the softmax head.
        channels: input channels (1 for greyscale backbones).

    Example:
        >>> model = build_model(compose(["smoke=true"]), num_classes=2)  # doctest: +SKIP
        >>> model(images)["logits"].shape  # (B, 2)  # doctest: +SKIP
    """
    m = cfg.model
    size = cfg.data.image_size
    entry = get_backbone(m.backbone)
    inputs = keras.Input((size, size, channels), name="image")
    x = inputs
    steps = cfg.augment.steps if cfg.augment.steps is not None else presets.get(cfg.augment.preset)
    if steps:
        x = presets.build(steps)(x)
    scaling = input_scaling(entry.input_scale, m.mean, m.std, channels)
    if scaling is not None:
        x = scaling(x)
    backbone = entry.builder(
        (size, size, channels),
        weights=m.weights,
        hub_handle=m.hub_handle,
        trainable_backbone=m.trainable_backbone,
    )
    backbone.name = "backbone"  # noqa: keras allows renaming before the model is used
    backbone.trainable = m.trainable_backbone
    features = backbone(x)
    embedding, normalized = embedding_neck(features, pooling=m.pooling, embedding_dim=m.embedding_dim, dropout=m.dropout)
    logits = softmax_head(embedding, num_classes, dropout=m.dropout, l2=m.l2)
    return keras.Model(inputs, {"embedding": normalized, "logits": logits}, name=f"{cfg.pipeline}_{m.backbone}")
