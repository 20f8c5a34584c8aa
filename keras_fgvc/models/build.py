"""``build_model(cfg, num_classes)``: inputs -> normalisation -> backbone -> neck -> heads.

Every model takes float pixels in [0, 255] (B, S, S, C) as its input ``image`` and returns
``{"embedding": L2-normalised embedding, "logits": float32 class logits}``, plus one
``"<head>_logits"`` output per margin head in ``cfg.model.heads`` (ArcFace, CosFace). Its layers
named ``backbone`` (features), ``pre_logits`` and ``embedding`` let a sub-model read any stage.

Training and inference
----------------------
``build_model`` returns the inference model: no augmentation (the training step applies it), no
label input, and each margin head emits plain scaled cosine logits ``s * cos(theta)``. A margin
head needs the label to put its margin on the target class, so training goes through
:func:`training_model`, a view that shares every layer and weight and also outputs
``"pre_logits"``; the engine (``training/trainer.py``) compiles that view with losses keyed by
output. ``"logits"`` is the softmax head when there is one; in a margin-only model (Hotel-ID's
ArcFace) it repeats the first margin head's cosine logits, so exports and ``predict`` read
``"logits"`` whatever the heads.
"""

import keras

from keras_fgvc.config.validate import ConfigError
from keras_fgvc.models.heads import HEAD_NAMES, is_margin_head, margin_head, output_key, softmax_head
from keras_fgvc.models.necks import embedding_neck
from keras_fgvc.models.registry import get_backbone


# model.input_scale -> the registry's name for it (models/registry.py INPUT_SCALES). "dataset" is
# standardize with model.mean/std that the driver measured on the training split
# (data/normalization.py) before building.
CONFIG_INPUT_SCALES = {"unit": "unit", "symmetric": "symmetric", "imagenet": "standardize", "raw": "raw",
                       "dataset": "standardize"}


def resolve_input_scale(config_scale, backbone_scale: str) -> str:
    """The scale a model uses: ``model.input_scale`` when set, else (None/"auto") the backbone's own.

    Example:
        >>> resolve_input_scale("symmetric", "unit"), resolve_input_scale("auto", "unit")
        ('symmetric', 'unit')
    """
    if config_scale in (None, "auto"):
        return backbone_scale
    if config_scale not in CONFIG_INPUT_SCALES:
        raise ConfigError(f"config key 'model.input_scale' = {config_scale!r}; choose one of: auto, "
                          f"{', '.join(CONFIG_INPUT_SCALES)}")
    return CONFIG_INPUT_SCALES[config_scale]


def input_scaling(input_scale, mean, std, channels):
    """The layer that maps [0, 255] pixels to what a backbone expects (None: nothing to do).

    ``input_scale``: raw (none) | unit ([0, 1]) | symmetric ([-1, 1]) | standardize
    (``(x / 255 - mean) / std``, per channel; a greyscale model uses the channel means).
    """
    if input_scale == "raw":
        return None
    if input_scale == "unit":
        return keras.layers.Rescaling(1.0 / 255, name="to_unit")
    if input_scale == "symmetric":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_symmetric")
    mean = [255.0 * m for m in mean][:channels] if channels > 1 else [255.0 * sum(mean) / len(mean)]
    variance = [(255.0 * s) ** 2 for s in std][:channels] if channels > 1 else [(255.0 * sum(std) / len(std)) ** 2]
    return keras.layers.Normalization(mean=mean, variance=variance, name="standardize")


def check_heads(heads) -> list[str]:
    """``model.heads`` as a list, or a ConfigError naming the allowed heads."""
    heads = list(heads)
    unknown = [head for head in heads if head not in HEAD_NAMES]
    if not heads or unknown or len(set(heads)) != len(heads):
        raise ConfigError(
            f"config key 'model.heads' = {heads!r}; give one or more distinct heads of: {', '.join(HEAD_NAMES)}"
        )
    return heads


def build_model(cfg, num_classes: int, channels: int | None = None) -> keras.Model:
    """Assemble the inference model a Config describes (see the module docstring for training).

    Args:
        cfg: a ``keras_fgvc.config.Config`` (reads ``model`` and ``data.image_size``).
        num_classes: classes of every head.
        channels: input channels (None: ``model.img_channels``; 1 for greyscale).

    Returns:
        A functional model ``image -> {"embedding", "logits", "<margin head>_logits"...}``;
        all logits are float32 under any precision policy.

    Example:
        >>> model = build_model(compose(["smoke=true", "model.heads=[softmax,arcface]"]), num_classes=2)  # doctest: +SKIP
        >>> sorted(model(images))  # ['arcface_logits', 'embedding', 'logits']  # doctest: +SKIP
    """
    m = cfg.model
    channels = channels or m.img_channels
    heads = check_heads(m.heads)
    size = cfg.data.image_size
    entry = get_backbone(m.backbone)
    inputs = keras.Input((size, size, channels), name="image")
    x = inputs
    scaling = input_scaling(resolve_input_scale(m.input_scale, entry.input_scale), m.mean, m.std, channels)
    if scaling is not None:
        x = scaling(x)
    # Only the options a config actually sets: our own families take no weights file or handle.
    options = {key: value for key, value in (("weights", m.weights), ("hub_handle", m.hub_handle)) if value}
    options.update(m.backbone_kwargs)  # names checked against the builder when the config was composed
    backbone = entry.builder((size, size, channels), **options)
    backbone.name = "backbone"  # noqa: keras allows renaming before the model is used
    backbone.trainable = m.trainable_backbone
    features = backbone(x)
    embedding, normalized = embedding_neck(
        features,
        pooling=m.pooling,
        embedding_dim=m.embedding_dim,
        dropout=m.dropout,
        batchnorm=m.neck_batchnorm,
        embedding_batchnorm=m.embedding_batchnorm,
    )
    outputs = {"embedding": normalized}
    if "softmax" in heads:
        outputs["logits"] = softmax_head(embedding, num_classes, dropout=m.dropout, l2=m.l2)
    for head in heads:
        if head != "softmax":
            layer = margin_head(head, num_classes, s=m.margin_scale, m=m.margin, easy_margin=m.easy_margin)
            outputs[output_key(head)] = layer(embedding)
    if "logits" not in outputs:
        # Margin-only model: "logits" is what exports and predict read, so it must exist.
        first = output_key(heads[0])
        outputs["logits"] = keras.layers.Identity(name="logits", dtype="float32")(outputs[first])
    return keras.Model(inputs, outputs, name=f"{cfg.pipeline}_{m.backbone}")


def _margin_layers(model):
    return [layer for layer in model.layers if is_margin_head(layer)]


def head_keys(model: keras.Model) -> list[str]:
    """The outputs of ``model`` that carry a classification loss in training, softmax first.

    ``"logits"`` counts only when a softmax Dense produces it (not the margin-only alias).

    Example:
        >>> head_keys(build_model(cfg_with_heads_softmax_arcface, 10))  # doctest: +SKIP
        ['logits', 'arcface_logits']
    """
    keys = [layer.name for layer in _margin_layers(model)]
    if isinstance(model.get_layer("logits"), keras.layers.Dense):
        keys.insert(0, "logits")
    return keys


def training_model(model: keras.Model) -> keras.Model:
    """The training view of a ``build_model`` model: same layers and weights, more outputs.

    Outputs are ``model``'s plus ``"pre_logits"`` (the embedding before L2 normalisation, which
    center and pre-logit-norm losses read). With a margin head the inputs are
    ``{"image": pixels, "label": int32 (B,)}`` and each ``"<head>_logits"`` is its margin logits
    (label -1: no margin on that row); otherwise the input is ``{"image"}`` alone.

    Args:
        model: a model returned by :func:`build_model` (or loaded back from ``.keras``).

    Example:
        >>> trainer = training_model(model)
        >>> trainer({"image": images, "label": labels})["arcface_logits"]  # doctest: +SKIP
    """
    embedding = model.get_layer("pre_logits").output
    # Losses read float32 under any precision policy (the Identity casts; it has no weights).
    outputs = {**model.output, "pre_logits": keras.layers.Identity(dtype="float32", name="pre_logits_float32")(embedding)}
    inputs = {"image": model.input}
    margin_layers = _margin_layers(model)
    if margin_layers:
        inputs["label"] = keras.Input((), dtype="int32", name="label")
        for layer in margin_layers:
            outputs[layer.name] = layer(embedding, inputs["label"])
    return keras.Model(inputs, outputs, name=f"{model.name}_train")
