"""Cross-entropies for partially labelled data: a NaN label means "no label" (DESIGN.md data flow:
label columns use NaN for missing), so the 5K pseudo-label pipeline can train on rows where only
some targets are known.

A missing entry contributes zero loss and zero gradient, and the batch loss is the mean over the
labelled entries only (0, not NaN, when none is labelled): see ``ElementwiseLoss``. The labels
are sanitised (NaN -> 0) before any arithmetic: a NaN label inside the cross-entropy would make
the loss's gradient at that entry NaN, and the zero cotangent that ``where`` sends there would
turn into ``0 * NaN = NaN`` on the logits.
"""

import keras
from keras import ops

from keras_fgvc.losses.base import ElementwiseLoss
from keras_fgvc.losses.registry import register_loss


@register_loss("masked_sparse_ce")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class MaskedSparseCategoricalCrossentropy(ElementwiseLoss):
    """Sparse softmax cross-entropy where NaN (or negative) labels are missing.

    Args:
        from_logits: whether ``y_pred`` holds logits (default) or probabilities.
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Inputs: ``y_true`` float ``(batch,)`` or ``(batch, 1)`` class ids with NaN for "no label";
    ``y_pred`` ``(batch, num_classes)``. Returns the mean over the labelled rows.

    Example:
        >>> loss = MaskedSparseCategoricalCrossentropy()
        >>> loss(np.array([2.0, np.nan, 0.0]), logits)   # row 1 is ignored
    """

    def __init__(self, from_logits=True, name="masked_sparse_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def elementwise(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1,))
        # NaN >= 0 is False, so NaN and the -1 "no target" convention are both missing.
        valid = ops.logical_not(ops.isnan(y_true)) & (y_true >= 0.0)
        labels = ops.cast(ops.where(valid, y_true, ops.zeros_like(y_true)), "int32")
        values = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=self.from_logits)
        return values, valid

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config


@register_loss("masked_bce")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class MaskedBinaryCrossentropy(ElementwiseLoss):
    """Element-wise binary cross-entropy where NaN targets are missing (multi-label, partial labels).

    Args:
        from_logits: whether ``y_pred`` holds logits (default) or probabilities.
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Inputs: ``y_true`` float ``(batch, labels)`` in [0, 1] with NaN for "unknown"; ``y_pred`` the
    same shape. Returns the mean over all labelled (row, label) entries, so a row with more known
    labels weighs more. A ``sample_weight`` must broadcast against ``(batch, labels)``.

    Example:
        >>> loss = MaskedBinaryCrossentropy()
        >>> loss(np.array([[1.0, np.nan], [0.0, 1.0]]), logits)   # 3 labelled entries
    """

    def __init__(self, from_logits=True, name="masked_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def elementwise(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        valid = ops.logical_not(ops.isnan(y_true))
        targets = ops.where(valid, y_true, ops.zeros_like(y_true))
        values = ops.binary_crossentropy(targets, y_pred, from_logits=self.from_logits)
        return values, valid

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config
