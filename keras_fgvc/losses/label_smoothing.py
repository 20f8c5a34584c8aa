"""Softmax cross-entropy from logits with integer labels: plain (``sparse_ce``) and with label
smoothing (``label_smoothing_ce``).

The smoothed form is the GhostNet/Stanford Cars thesis's (seed 001, Sec. 4.2.1 "Loss function",
Figure 13): ``loss = (1 - eps) * ce(i) + eps * sum_j ce(j) / N``, with ce(j) = -log softmax_j and
N the number of classes. That equals cross-entropy against q = (1 - eps) * one_hot + eps / N, the
target of ``keras.losses.CategoricalCrossentropy(label_smoothing=eps)`` and of PyTorch's
``CrossEntropyLoss(label_smoothing=eps)``. Keras 3's ``SparseCategoricalCrossentropy`` has no
``label_smoothing``, hence this class; it avoids materialising one-hot labels.
"""

import keras
from keras import ops

from keras_fgvc.losses.registry import register_loss


def is_soft_target(y_true, y_pred) -> bool:
    """True for one target row per sample over the classes ([B, N] against [B, N] logits), as
    label mixing (augment/mixing.py) produces; False for integer labels ([B] or [B, 1])."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] != 1


def _int_labels(y_true):
    """(batch,) int32 labels from (batch,) or (batch, 1) integer-valued labels."""
    return ops.cast(ops.reshape(y_true, (-1,)), "int32")


@register_loss("sparse_ce")
def sparse_ce(ignore_class=None, **kwargs):
    """``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` under the registry name.

    Args:
        ignore_class: a label value that contributes no loss (Keras semantics).
        **kwargs: ``reduction``, ``name`` for ``keras.losses.Loss``.

    Example:
        >>> sparse_ce()(labels, logits)
    """
    kwargs.setdefault("name", "sparse_ce")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class, **kwargs)


@register_loss("label_smoothing_ce")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class LabelSmoothingCrossEntropy(keras.losses.Loss):
    """Label-smoothed softmax cross-entropy from logits, with integer labels or mixed one-hot rows.

    Per sample: ``(1 - epsilon) * (-log p_y) + epsilon * mean_j(-log p_j)`` where
    ``p = softmax(logits)``; the batch mean by default. Rows ``q`` [B, N] (CutMix/MixUp targets)
    replace ``-log p_y`` by ``-sum_j q_j log p_j``.

    Args:
        epsilon: smoothing mass spread uniformly over all classes (0 gives plain CE).
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Example:
        >>> loss = LabelSmoothingCrossEntropy(epsilon=0.1)
        >>> loss(np.array([2, 0]), logits)   # logits: (2, num_classes)
    """

    def __init__(self, epsilon=0.1, name="label_smoothing_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        log_probs = ops.log_softmax(y_pred, axis=-1)
        if is_soft_target(y_true, y_pred):
            # Label-mixing augmentation (CutMix, MixUp) hands over mixed one-hot rows q; the loss is
            # CE against (1 - eps) * q + eps / N, which for a one-hot q is the integer form below.
            nll = -ops.sum(ops.cast(y_true, log_probs.dtype) * log_probs, axis=-1)
        else:
            labels = _int_labels(y_true)
            nll = -ops.sum(ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=log_probs.dtype) * log_probs, axis=-1)
        uniform = -ops.mean(log_probs, axis=-1)
        return (1.0 - self.epsilon) * nll + self.epsilon * uniform

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
