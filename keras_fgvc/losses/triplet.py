"""Batch-hard and batch-all triplet losses on a batch of embeddings with integer labels.

Source: Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
arXiv:1703.07737 (2017), Sec. 2:
  - batch hard (eq. 5): for each anchor a, the farthest positive and the closest negative in the
    batch, ``[m + max_p D(a, p) - min_n D(a, n)]_+``;
  - soft margin (Sec. 2, "soft-margin"): ``[.]_+`` with margin is replaced by
    ``softplus(x) = log(1 + exp(x))`` of the same difference;
  - batch all (eq. 6) sums over all valid (a, p, n); the authors report that averaging only over
    the non-zero terms ("BA with != 0") works better, and that is what ``BatchAllTripletLoss``
    does (the mean over valid triplets with positive loss; with ``soft_margin`` every valid
    triplet is positive and counts).
The masks follow the "tensorflow-triplet-loss" code the Squeeze project borrowed (seed 003).

Batches sampled P x K (``data.sampling``) give every anchor a positive and a negative; an anchor
without one (a singleton class, or a batch of one class) contributes nothing and is left out of
the mean; no valid anchor gives loss 0.
"""

import keras
from keras import ops

from keras_fgvc.losses.base import ElementwiseLoss
from keras_fgvc.losses.registry import register_loss

# sqrt has an infinite derivative at 0: distances with a squared value at or below this are
# returned as exactly 0 with zero gradient (duplicates and the diagonal land here).
_SQRT_FLOOR = 1e-16


def pairwise_distances(embeddings, squared=False):
    """(B, B) Euclidean (or squared) distances with finite gradients, exact 0 on the diagonal.

    Uses ||a||^2 - 2 a.b + ||b||^2 (B x B memory rather than B x B x D), clipped at 0 against
    rounding.

    Example:
        >>> pairwise_distances(ops.array([[0.0, 0.0], [3.0, 4.0]]))  # [[0, 5], [5, 0]]
    """
    embeddings = ops.cast(embeddings, "float32")
    sq_norms = ops.sum(ops.square(embeddings), axis=-1)
    d2 = sq_norms[:, None] - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings)) + sq_norms[None, :]
    off_diagonal = 1.0 - ops.eye(ops.shape(embeddings)[0], dtype=d2.dtype)
    d2 = ops.maximum(d2, 0.0) * off_diagonal
    if squared:
        return d2
    positive = d2 > _SQRT_FLOOR
    return ops.where(positive, ops.sqrt(ops.where(positive, d2, ops.ones_like(d2))), ops.zeros_like(d2))


def _pair_masks(y_true, batch):
    """Boolean (B, B) masks: same label and not the anchor itself; different label."""
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    same = ops.equal(labels[:, None], labels[None, :])
    not_self = ops.logical_not(ops.cast(ops.eye(batch), "bool"))
    return same & not_self, ops.logical_not(same)


class _TripletBase(ElementwiseLoss):
    def __init__(self, margin=0.3, squared=False, soft_margin=False, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.squared = bool(squared)
        self.soft_margin = bool(soft_margin)

    def _hinge(self, difference):
        """[m + d_ap - d_an]_+ or, with soft_margin, log(1 + exp(d_ap - d_an)) (no margin)."""
        if self.soft_margin:
            return ops.softplus(difference)
        return ops.relu(self.margin + difference)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "squared": self.squared, "soft_margin": self.soft_margin})
        return config


@register_loss("batch_hard_triplet")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class BatchHardTripletLoss(_TripletBase):
    """Batch-hard triplet loss (Hermans et al. 2017, eq. 5): hardest positive and negative per anchor.

    Args:
        margin: hinge margin m (ignored when ``soft_margin``).
        squared: use squared Euclidean distances.
        soft_margin: ``log(1 + exp(d_ap - d_an))`` instead of ``[m + d_ap - d_an]_+``.
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Inputs: ``y_true`` int labels ``(batch,)``; ``y_pred`` embeddings ``(batch, dim)`` (not
    normalised here: add the normalisation to the model if the metric wants it). Returns the mean
    over anchors that have both a positive and a negative in the batch.

    Example:
        >>> BatchHardTripletLoss(margin=0.3)(labels, embeddings)
    """

    def __init__(self, margin=0.3, squared=False, soft_margin=False, name="batch_hard_triplet", **kwargs):
        super().__init__(margin=margin, squared=squared, soft_margin=soft_margin, name=name, **kwargs)

    def elementwise(self, y_true, y_pred):
        distances = pairwise_distances(y_pred, self.squared)
        positive, negative = _pair_masks(y_true, ops.shape(distances)[0])
        zeros = ops.zeros_like(distances)
        hardest_positive = ops.max(ops.where(positive, distances, zeros), axis=1)
        # A finite stand-in for +inf on non-negatives: no inf - inf anywhere, even without negatives.
        beyond = ops.stop_gradient(ops.max(distances)) + 1.0
        hardest_negative = ops.min(ops.where(negative, distances, zeros + beyond), axis=1)
        valid = ops.any(positive, axis=1) & ops.any(negative, axis=1)
        return self._hinge(hardest_positive - hardest_negative), valid


@register_loss("batch_all_triplet")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class BatchAllTripletLoss(_TripletBase):
    """Batch-all triplet loss averaged over the valid triplets with positive loss (Hermans et al.
    2017, "BA != 0").

    Args:
        margin: hinge margin m (ignored when ``soft_margin``).
        squared: use squared Euclidean distances.
        soft_margin: softplus instead of the hinge; then every valid triplet counts.
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Inputs as :class:`BatchHardTripletLoss`. The per-entry values are the B^3 triplets (a, p, n)
    flattened, so ``reduction="none"`` returns B^3 values and a ``sample_weight`` is not
    supported; memory is O(B^3) (262k floats at B = 64).

    Example:
        >>> BatchAllTripletLoss(margin=0.3)(labels, embeddings)
    """

    def __init__(self, margin=0.3, squared=False, soft_margin=False, name="batch_all_triplet", **kwargs):
        super().__init__(margin=margin, squared=squared, soft_margin=soft_margin, name=name, **kwargs)

    def elementwise(self, y_true, y_pred):
        distances = pairwise_distances(y_pred, self.squared)
        positive, negative = _pair_masks(y_true, ops.shape(distances)[0])
        # triplet[a, p, n] = d(a, p) - d(a, n)
        losses = self._hinge(distances[:, :, None] - distances[:, None, :])
        valid = positive[:, :, None] & negative[:, None, :]
        if not self.soft_margin:
            valid = valid & (losses > 0.0)
        return ops.reshape(losses, (-1,)), ops.reshape(valid, (-1,))
