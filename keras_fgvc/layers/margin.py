"""Additive angular (ArcFace) and additive cosine (CosFace) margin heads.

The margin math lives in :func:`arcface_logits` and :func:`cosface_logits`, called by the layers
below: the training view (``models.build.training_model``) feeds them the label and the engine
takes cross-entropy of their margin logits, so there is one margin implementation.

References:
  ArcFace: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019,
    eq. (3): logit_y = s * cos(theta_y + m). The th = cos(pi - m) / mm = sin(pi - m) * m fallback
    (keep the logit monotonic in theta once theta + m > pi) follows the insightface reference code.
  CosFace: Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018,
    eq. (4): logit_y = s * (cos(theta_y) - m).
"""

import math

import keras
from keras import ops

# Below this, sin(theta) = sqrt(1 - cos^2) is taken as exactly 0; above it d sin / d cos <= 1e6.
_SIN_EPS = 1e-12


def _safe_sin(cos):
    """sqrt(1 - cos^2) with a finite gradient at cos = +-1.

    The inner ``where`` keeps 0 away from the sqrt (whose gradient there is infinite, and
    0 * inf = NaN would leak through the outer ``where``); the outer one returns the exact 0.
    """
    sq = ops.clip(1.0 - cos * cos, 0.0, 1.0)
    positive = sq > _SIN_EPS
    return ops.where(positive, ops.sqrt(ops.where(positive, sq, 1.0)), 0.0)


def _target_mask(labels, num_classes):
    """One-hot float32 mask of the target class; labels < 0 (unlabelled rows) get no margin."""
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    return ops.one_hot(labels, num_classes, dtype="float32")


def arcface_logits(cos, labels, s=30.0, m=0.5, easy_margin=False):
    """Scaled logits with cos(theta + m) on the target class.

    Args:
        cos: float tensor ``(batch, classes)`` of cosine similarities in [-1, 1].
        labels: integer tensor ``(batch,)`` or ``(batch, 1)``; -1 means "no target".
        s: scale applied to every logit.
        m: additive angular margin in radians.
        easy_margin: apply the margin only where cos > 0 (otherwise keep cos); when False use
            the insightface fallback cos - sin(pi - m) * m wherever theta + m would pass pi.

    Returns:
        float32 tensor ``(batch, classes)``.

    Example:
        >>> arcface_logits(ops.array([[1.0, 0.0]]), ops.array([0]), s=1.0, m=0.5)  # [[cos 0.5, 0]]
    """
    cos = ops.clip(ops.cast(cos, "float32"), -1.0, 1.0)
    sin = _safe_sin(cos)
    phi = cos * math.cos(m) - sin * math.sin(m)  # cos(theta + m)
    if easy_margin:
        phi = ops.where(cos > 0.0, phi, cos)
    else:
        threshold = math.cos(math.pi - m)
        phi = ops.where(cos > threshold, phi, cos - math.sin(math.pi - m) * m)
    mask = _target_mask(labels, ops.shape(cos)[-1])
    return s * (mask * phi + (1.0 - mask) * cos)


def cosface_logits(cos, labels, s=30.0, m=0.35):
    """Scaled logits with cos(theta) - m on the target class (see :func:`arcface_logits`).

    Example:
        >>> cosface_logits(ops.array([[0.5, 0.2]]), ops.array([0]), s=2.0, m=0.1)  # [[0.8, 0.4]]
    """
    cos = ops.clip(ops.cast(cos, "float32"), -1.0, 1.0)
    mask = _target_mask(labels, ops.shape(cos)[-1])
    return s * (cos - mask * m)


def _unit(x, axis, epsilon=1e-12):
    """``x / max(||x||, epsilon)`` through sqrt and a division, not ``ops.normalize``'s rsqrt.

    Both are correctly rounded in IEEE float32 on every CPU, while TensorFlow's vectorised rsqrt is
    an approximation on AVX-512 machines (it turns (3, 0) into (0.99999994, 0)). ArcFace takes the
    arccos of the cosine, and near cos = 1 one ulp becomes an angle of 3.5e-4 and a target logit
    5e-3 lower at s = 30: the same model would score differently on different hardware and backends.
    """
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    return x / ops.maximum(norm, epsilon)


class _CosineMarginHead(keras.layers.Layer):
    """Shared base: class-centre matrix and cosine similarity; subclasses supply the margin."""

    def __init__(self, num_classes, s=30.0, **kwargs):
        # Heads and logits stay float32 under mixed precision (DESIGN.md precision policy).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.s = float(s)

    def build(self, embedding_shape, labels_shape=None):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(embedding_shape[-1]), self.num_classes),
            initializer="glorot_uniform",
        )

    def cosine(self, embedding):
        embedding = ops.cast(embedding, "float32")
        kernel = ops.cast(self.kernel, "float32")
        # Normalise rows of the embedding and columns (class centres) of the kernel.
        return ops.matmul(_unit(embedding, axis=-1), _unit(kernel, axis=0))

    def call(self, embedding, labels=None, training=None):
        cos = self.cosine(embedding)
        if labels is None:
            return self.s * ops.clip(cos, -1.0, 1.0)
        return self.margin_logits(cos, labels)

    def compute_output_spec(self, embedding, labels=None, training=None):
        return keras.KerasTensor((embedding.shape[0], self.num_classes), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "s": self.s})
        return config


@keras.saving.register_keras_serializable(package="keras_fgvc")
class ArcFace(_CosineMarginHead):
    """ArcFace prediction layer: (embedding, labels) -> margin logits; embedding -> s * cos logits.

    Args:
        num_classes: number of class centres.
        s: logit scale (64 in the paper for faces, 30 is common for retrieval).
        m: additive angular margin in radians (paper: 0.5).
        easy_margin: see :func:`arcface_logits`.
        **kwargs: forwarded to ``keras.layers.Layer`` (dtype defaults to float32).

    Example:
        >>> head = ArcFace(100, s=30.0, m=0.5)
        >>> train_logits = head(embedding, labels)   # margin on the target class
        >>> logits = head(embedding)                 # inference: s * cos(theta)
    """

    def __init__(self, num_classes, s=30.0, m=0.5, easy_margin=False, **kwargs):
        super().__init__(num_classes, s=s, **kwargs)
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def margin_logits(self, cos, labels):
        return arcface_logits(cos, labels, self.s, self.m, self.easy_margin)

    def get_config(self):
        config = super().get_config()
        config.update({"m": self.m, "easy_margin": self.easy_margin})
        return config


@keras.saving.register_keras_serializable(package="keras_fgvc")
class CosFace(_CosineMarginHead):
    """CosFace prediction layer: (embedding, labels) -> s * (cos - m on target); embedding -> s * cos.

    Args:
        num_classes: number of class centres.
        s: logit scale (paper: 64).
        m: additive cosine margin (paper: 0.35).
        **kwargs: forwarded to ``keras.layers.Layer`` (dtype defaults to float32).

    Example:
        >>> logits = CosFace(100, s=30.0, m=0.35)(embedding, labels)
    """

    def __init__(self, num_classes, s=30.0, m=0.35, **kwargs):
        super().__init__(num_classes, s=s, **kwargs)
        self.m = float(m)

    def margin_logits(self, cos, labels):
        return cosface_logits(cos, labels, self.s, self.m)

    def get_config(self):
        config = super().get_config()
        config.update({"m": self.m})
        return config
