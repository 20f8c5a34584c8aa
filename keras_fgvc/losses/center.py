"""Center loss with moving class centres (stateful; see the protocol in ``losses/registry.py``).

Source: Wen, Zhang, Li, Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016:
  - eq. (2): L_C = 1/2 * sum_i ||x_i - c_{y_i}||^2. We take the batch mean instead of the sum
    (Keras' ``sum_over_batch_size``), so the loss weight does not depend on the batch size; the
    paper's lambda is then lambda_paper * batch_size.
  - the gradient w.r.t. x_i is x_i - c_{y_i} (eq. 3, divided by the batch size here); the centres
    get no gradient: they are non-trainable state updated by eq. (4):
    delta_c_j = sum_i [y_i = j] (c_j - x_i) / (1 + sum_i [y_i = j]),  c_j <- c_j - alpha * delta_c_j
    (Algorithm 1 computes the loss with c^t, then updates to c^{t+1}; so does ``compute``).
The facenet code the Squeeze project borrowed (seed 003) uses a per-sample ``(1 - alpha)`` step
instead; we follow the paper.
"""

import keras
from keras import ops

from keras_fgvc.losses.base import ElementwiseLoss
from keras_fgvc.losses.registry import register_loss


@register_loss("center")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class CenterLoss(ElementwiseLoss):
    """Center loss ``1/2 ||x_i - c_{y_i}||^2`` averaged over the labelled samples of the batch.

    Args:
        num_classes: number of centres (the engine passes it from the model).
        dim: embedding size (the engine passes the last dim of the output this loss is on).
        alpha: centre learning rate of eq. (4), in [0, 1] (paper: 0.5).
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Inputs: ``y_true`` class ids ``(batch,)`` (NaN or negative: unlabelled, no loss, no update);
    ``y_pred`` embeddings ``(batch, dim)``. The centres (``variables[0]``, zeros at start) are
    created here, not lazily, so a ``tf.distribute`` scope around the constructor mirrors them;
    under a strategy each replica's update is averaged (``aggregation="mean"``).

    ``loss(y_true, y_pred)`` never changes the centres; ``loss.compute(y_true, y_pred, training=True)``
    returns the same value and then moves the centres.

    Example:
        >>> loss = CenterLoss(num_classes=10, dim=128, alpha=0.5)
        >>> value = loss.compute(labels, embeddings, training=True)
    """

    stateful = True  # registry protocol: the engine calls compute(..., training) and tracks variables

    def __init__(self, num_classes, dim, alpha=0.5, name="center_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.alpha = float(alpha)
        self.centers = keras.Variable(
            ops.zeros((self.num_classes, self.dim), dtype="float32"),
            trainable=False,
            dtype="float32",
            aggregation="mean",
            name="centers",
        )

    @property
    def variables(self):
        return [self.centers]

    def _labels(self, y_true):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        valid = ops.logical_not(ops.isnan(y_true)) & (y_true >= 0.0) & (y_true < self.num_classes)
        return ops.cast(ops.where(valid, y_true, ops.zeros_like(y_true)), "int32"), valid

    def elementwise(self, y_true, y_pred):
        labels, valid = self._labels(y_true)
        centers = ops.stop_gradient(ops.take(ops.convert_to_tensor(self.centers), labels, axis=0))
        values = 0.5 * ops.sum(ops.square(ops.cast(y_pred, "float32") - centers), axis=-1)
        return values, valid

    def update_centers(self, y_true, y_pred):
        """Move the centres by eq. (4) using this batch; no gradient flows through the update."""
        labels, valid = self._labels(y_true)
        features = ops.stop_gradient(ops.cast(y_pred, "float32"))
        # Unlabelled rows get an all-zero one-hot row: they count for no class.
        onehot = ops.one_hot(labels, self.num_classes, dtype="float32") * ops.cast(valid, "float32")[:, None]
        counts = ops.sum(onehot, axis=0)[:, None]  # (K, 1): n_j
        feature_sums = ops.matmul(ops.transpose(onehot), features)  # (K, D): sum of x_i with y_i = j
        centers = ops.convert_to_tensor(self.centers)
        delta = (counts * centers - feature_sums) / (1.0 + counts)
        self.centers.assign(centers - self.alpha * delta)

    def compute(self, y_true, y_pred, training=False):
        """The loss with the current centres; when ``training``, then update them (eq. 4)."""
        value = self(y_true, y_pred)
        if training:
            self.update_centers(y_true, y_pred)
        return value

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dim": self.dim, "alpha": self.alpha})
        return config
