"""Pre-logit norm loss: penalise the norm of the embedding that feeds the classifier.

The Squeeze project (seed 003) lists "pre-logit normalize with weighting 1e-5" (stage 2, raised
to 1e-4 later) and credits its teacher network to facenet. Seed 003 gives no formula, so this is
facenet's (David Sandberg, ``src/train_softmax.py``):
    eps = 1e-4
    prelogits_norm = tf.reduce_mean(tf.norm(tf.abs(prelogits) + eps, ord=prelogits_norm_p, axis=1))
with ``prelogits_norm_p = 1.0`` by default, i.e. mean_i sum_d (|x_id| + eps). The ``eps`` keeps
the p > 1 norms differentiable at x = 0; the weight (1e-5 / 1e-4) belongs to the stage config.
"""

import keras
from keras import ops

from keras_fgvc.losses.registry import register_loss


@register_loss("prelogit_norm")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class PreLogitNormLoss(keras.losses.Loss):
    """Mean over the batch of ``|| |x_i| + epsilon ||_p`` (facenet's pre-logits norm); ``y_true`` is ignored.

    Args:
        p: order of the norm (facenet default 1.0: the sum of absolute values).
        epsilon: added to ``|x|`` before the norm (facenet: 1e-4).
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Example:
        >>> PreLogitNormLoss(p=1.0)(None, embeddings)   # any y_true works; it is ignored
    """

    def __init__(self, p=1.0, epsilon=1e-4, name="prelogit_norm", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(p) < 1.0:
            raise ValueError(f"p must be >= 1 for a norm, got {p}")
        self.p = float(p)
        self.epsilon = float(epsilon)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras converts y_true to a tensor; the engine may have no target for this output.
        if y_true is None:
            y_true = ops.zeros(ops.shape(y_pred)[:1])
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        magnitudes = ops.abs(y_pred) + self.epsilon
        if self.p == 1.0:
            return ops.sum(magnitudes, axis=-1)
        return ops.power(ops.sum(ops.power(magnitudes, self.p), axis=-1), 1.0 / self.p)

    def get_config(self):
        config = super().get_config()
        config.update({"p": self.p, "epsilon": self.epsilon})
        return config
