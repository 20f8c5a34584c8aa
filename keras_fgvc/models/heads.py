"""Prediction heads on the embedding: softmax Dense, and the ArcFace / CosFace margin heads.

Heads are data: ``HEAD_NAMES`` lists what ``model.heads`` may name and ``MARGIN_HEADS`` holds one
row per margin head (its layer class and its paper margin). Every head emits float32 logits under
any precision policy. A softmax head's output is keyed ``"logits"``; a margin head's is keyed
``"<head>_logits"`` (see :func:`output_key`).
"""

from dataclasses import dataclass

import keras

from keras_fgvc.layers.margin import ArcFace, CosFace


@dataclass(frozen=True)
class MarginHeadSpec:
    """One margin head family: its layer class, its published margin, and whether it takes easy_margin."""

    layer: type
    default_margin: float
    has_easy_margin: bool


MARGIN_HEADS: dict[str, MarginHeadSpec] = {
    # Deng et al., ArcFace, CVPR 2019, sec. 3: m = 0.5 rad.
    "arcface": MarginHeadSpec(ArcFace, 0.5, has_easy_margin=True),
    # Wang et al., CosFace, CVPR 2018, sec. 4.1: m = 0.35.
    "cosface": MarginHeadSpec(CosFace, 0.35, has_easy_margin=False),
}
HEAD_NAMES = ("softmax", *MARGIN_HEADS)


def output_key(head: str) -> str:
    """The model output key of a head: ``"logits"`` for softmax, ``"<head>_logits"`` otherwise.

    Example:
        >>> output_key("arcface")
        'arcface_logits'
    """
    return "logits" if head == "softmax" else f"{head}_logits"


def softmax_head(embedding, num_classes, dropout=0.0, l2=0.0, name="logits"):
    """Dropout -> Dense(num_classes) logits (softmax lives in the loss / export, from_logits=True).

    This is the 5K head of SYSTEMS.md section 5 ("Dropout -> Dense softmax with L2"); emitting
    logits and folding the softmax into the loss is the numerically stable form of the same model.

    Args:
        embedding: symbolic 2-D embedding tensor.
        num_classes: output classes.
        dropout: dropout rate before the Dense (0: none).
        l2: L2 kernel regulariser factor (0: none).
        name: name of the Dense layer (and hence of the output).

    Example:
        >>> logits = softmax_head(keras.Input((128,)), num_classes=10, dropout=0.2, l2=1e-4)
    """
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(embedding) if dropout else embedding
    regularizer = keras.regularizers.L2(l2) if l2 else None
    return keras.layers.Dense(num_classes, kernel_regularizer=regularizer, dtype="float32", name=name)(x)


def margin_head(head, num_classes, s=30.0, m=None, easy_margin=False):
    """The margin head layer named ``head`` ("arcface" | "cosface"), named after its output key.

    The layer returns ``s * cos(theta)`` when called on the embedding alone (inference) and the
    margin logits when also given the labels (training); it is float32 under mixed precision.

    Args:
        head: a key of ``MARGIN_HEADS``.
        num_classes: number of class centres.
        s: logit scale.
        m: margin; None takes the head's published value (``MARGIN_HEADS[head].default_margin``).
        easy_margin: ArcFace only (ignored by heads without it).

    Example:
        >>> layer = margin_head("arcface", 100, s=30.0)
        >>> layer.m, layer.name
        (0.5, 'arcface_logits')
    """
    if head not in MARGIN_HEADS:
        raise ValueError(f"unknown margin head {head!r}; choose one of: {', '.join(MARGIN_HEADS)}")
    spec = MARGIN_HEADS[head]
    options = {"easy_margin": easy_margin} if spec.has_easy_margin else {}
    margin = spec.default_margin if m is None else m
    return spec.layer(num_classes, s=s, m=margin, name=output_key(head), **options)


def is_margin_head(layer) -> bool:
    """True for a layer built by :func:`margin_head`."""
    return isinstance(layer, tuple(spec.layer for spec in MARGIN_HEADS.values()))
