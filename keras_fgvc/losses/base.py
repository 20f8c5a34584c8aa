"""Shared base for losses whose batch average must skip some entries (missing labels, anchors
without a positive, triplets with zero loss).

A subclass returns per-entry values plus a boolean ``valid`` mask from :meth:`elementwise`.
``call`` zeroes the invalid entries and, for the averaging reductions, rescales the rest by
``n_total / n_valid``, so Keras' own ``sum_over_batch_size`` reduction (which also applies the
``1 / num_replicas`` scaling under ``tf.distribute``) yields the mean over the valid entries only.
This is the arithmetic Keras applies to masked losses (``keras.src.losses.loss.apply_mask``),
done here with public ops. No valid entry gives loss 0, never NaN (``divide_no_nan``).
"""

import keras
from keras import ops

_AVERAGING = ("sum_over_batch_size", "mean")


class ElementwiseLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` that averages only over the entries :meth:`elementwise` marks valid.

    Subclasses implement ``elementwise(y_true, y_pred) -> (values, valid)``; the values at
    invalid entries must already be finite with finite gradients (sanitise labels before using
    them), because ``where`` routes a zero cotangent through them and ``0 * NaN = NaN``.

    With ``reduction="none"`` the call returns the per-entry values with zeros at invalid entries
    (unscaled); ``"sum"`` sums the valid entries.
    """

    def elementwise(self, y_true, y_pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        values, valid = self.elementwise(y_true, y_pred)
        values = ops.where(valid, values, ops.zeros_like(values))
        if self.reduction in _AVERAGING:
            total = ops.cast(ops.size(values), values.dtype)
            n_valid = ops.sum(ops.cast(valid, values.dtype))
            values = values * ops.divide_no_nan(total, n_valid)
        return values
