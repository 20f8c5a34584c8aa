"""Margin losses that train an ArcFace/CosFace head inside a plain functional model.

The model's head emits inference logits ``s * cos(theta)`` (no label input needed); the loss
recovers cos(theta) = logits / s, applies the margin to the target class with the same
functions the layers use, and takes softmax cross-entropy. So ``model.fit(x, labels)`` trains
with the margin while ``model.predict`` returns plain cosine logits.
"""

import keras
from keras import ops

from keras_fgvc.layers.margin import arcface_logits, cosface_logits


class _MarginLoss(keras.losses.Loss):
    def __init__(self, s=30.0, m=0.5, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.s = float(s)
        self.m = float(m)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        cos = ops.cast(y_pred, "float32") / self.s
        logits = self.margin_logits(cos, labels)
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def get_config(self):
        config = super().get_config()
        config.update({"s": self.s, "m": self.m})
        return config


@keras.saving.register_keras_serializable(package="keras_fgvc")
class ArcFaceLoss(_MarginLoss):
    """Softmax CE of ArcFace logits computed from a head's ``s * cos`` output.

    Args:
        s: the scale the head used (must match ``ArcFace.s``).
        m: additive angular margin in radians.
        easy_margin: see ``keras_fgvc.layers.margin.arcface_logits``.
        reduction, name, dtype: as for ``keras.losses.Loss``.

    Example:
        >>> model.compile("sgd", loss=ArcFaceLoss(s=30.0, m=0.5))  # head: ArcFace(n, s=30.0)
    """

    def __init__(self, s=30.0, m=0.5, easy_margin=False, name="arcface_loss", **kwargs):
        super().__init__(s=s, m=m, name=name, **kwargs)
        self.easy_margin = bool(easy_margin)

    def margin_logits(self, cos, labels):
        return arcface_logits(cos, labels, self.s, self.m, self.easy_margin)

    def get_config(self):
        config = super().get_config()
        config.update({"easy_margin": self.easy_margin})
        return config


@keras.saving.register_keras_serializable(package="keras_fgvc")
class CosFaceLoss(_MarginLoss):
    """Softmax CE of CosFace logits computed from a head's ``s * cos`` output.

    Args:
        s: the scale the head used (must match ``CosFace.s``).
        m: additive cosine margin.
        reduction, name, dtype: as for ``keras.losses.Loss``.

    Example:
        >>> model.compile("sgd", loss=CosFaceLoss(s=30.0, m=0.35))
    """

    def __init__(self, s=30.0, m=0.35, name="cosface_loss", **kwargs):
        super().__init__(s=s, m=m, name=name, **kwargs)

    def margin_logits(self, cos, labels):
        return cosface_logits(cos, labels, self.s, self.m)
