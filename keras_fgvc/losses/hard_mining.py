"""Hard-instance mining: train on the hardest samples of each batch only.

The Squeeze project (seed 003) adds "hard instance mining to prevent overfitting those easy
samples" and gives no formula; we use online hard example mining in its simplest form (as in
Shrivastava et al., "Training Region-based Object Detectors with Online Hard Example Mining",
CVPR 2016: keep the top-loss examples of the batch): the mean of the k largest per-sample losses
of a base loss, with k = ceil(fraction * n_labelled) or a fixed ``top_k`` (capped at n_labelled).

The base loss is any registered per-sample loss; entries it masks out (missing labels, anchors
without a positive) are never selected. The ranking carries no gradient; the selected losses do,
exactly as the base loss's.
"""

import math

import keras
from keras import ops

from keras_fgvc.losses.base import ElementwiseLoss
from keras_fgvc.losses.registry import build_loss, check_loss, get_loss_entry, register_loss


@keras.saving.register_keras_serializable(package="keras_fgvc")
class HardInstanceMining(ElementwiseLoss):
    """Mean of the top-k per-sample values of ``loss`` in the batch.

    Args:
        loss: the base ``keras.losses.Loss`` (built with ``reduction="none"`` by the registry);
            must not need a teacher nor hold state.
        fraction: keep ceil(fraction * n) of the n labelled samples, in (0, 1]; default 0.5.
        top_k: keep a fixed number of samples instead (capped at n); exclusive with ``fraction``.
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Example:
        >>> base = LabelSmoothingCrossEntropy(0.1, reduction="none")
        >>> HardInstanceMining(base, fraction=0.5)(labels, logits)   # mean of the worse half
    """

    def __init__(self, loss, fraction=None, top_k=None, name="hard_mining", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if getattr(loss, "needs_teacher", False) or getattr(loss, "stateful", False):
            raise ValueError(f"hard mining needs a stateless, teacher-free base loss, got {loss.name!r}")
        if fraction is not None and top_k is not None:
            raise ValueError("give either fraction or top_k, not both")
        if top_k is None:
            fraction = 0.5 if fraction is None else float(fraction)
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        elif int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.loss = loss
        self.fraction = fraction
        self.top_k = None if top_k is None else int(top_k)

    def elementwise(self, y_true, y_pred):
        if isinstance(self.loss, ElementwiseLoss):
            values, valid = self.loss.elementwise(y_true, y_pred)
        else:
            # Loss.call is the per-sample loss before any reduction.
            values = self.loss.call(y_true, y_pred)
            valid = ops.ones_like(values, dtype="bool")
        values, valid = ops.reshape(values, (-1,)), ops.reshape(valid, (-1,))
        n_valid = ops.sum(ops.cast(valid, "int32"))
        if self.top_k is not None:
            k = ops.minimum(self.top_k, n_valid)
        else:
            k = ops.cast(ops.ceil(self.fraction * ops.cast(n_valid, "float32")), "int32")
        scores = ops.where(valid, ops.stop_gradient(values), ops.full_like(values, -math.inf))
        # rank 0 = hardest; ranks form a permutation, so ties still give exactly k entries.
        ranks = ops.argsort(ops.argsort(-scores))
        return values, valid & (ranks < k)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "loss": keras.saving.serialize_keras_object(self.loss),
                "fraction": self.fraction,
                "top_k": self.top_k,
            }
        )
        return config


def _validate_hard_mining(kwargs):
    from keras_fgvc.config.validate import ConfigError  # lazily, like the registry

    name = kwargs["loss"]
    entry = get_loss_entry(name)
    if getattr(entry.builder, "needs_teacher", False) or getattr(entry.builder, "stateful", False):
        raise ConfigError(f"loss 'hard_mining' cannot wrap '{name}': it needs a stateless, teacher-free base loss.")
    check_loss(name, kwargs.get("loss_kwargs"))
    fraction, top_k = kwargs.get("fraction"), kwargs.get("top_k")
    if fraction is not None and top_k is not None:
        raise ConfigError("loss 'hard_mining': give either kwarg 'fraction' or 'top_k', not both.")
    if fraction is not None and not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0):
        raise ConfigError(f"loss 'hard_mining': kwarg 'fraction' = {fraction!r}; use a number in (0, 1].")
    if top_k is not None and not (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1):
        raise ConfigError(f"loss 'hard_mining': kwarg 'top_k' = {top_k!r}; use an integer >= 1.")


@register_loss("hard_mining", validate=_validate_hard_mining)
def hard_mining(loss, loss_kwargs=None, fraction=None, top_k=None, num_classes=None, dim=None, output=None, **kwargs):
    """Registry builder: ``{name: hard_mining, kwargs: {loss: <name>, loss_kwargs: {...}, fraction: 0.5}}``.

    The engine's context passes through to the base loss builder; the base is built with
    ``reduction="none"``.

    Example:
        >>> hard_mining("label_smoothing_ce", {"epsilon": 0.1}, fraction=0.25)
    """
    context = {"num_classes": num_classes, "dim": dim, "output": output}
    base = build_loss(loss, loss_kwargs, {k: v for k, v in context.items() if v is not None}, reduction="none")
    return HardInstanceMining(base, fraction=fraction, top_k=top_k, **kwargs)
