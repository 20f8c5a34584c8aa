"""Optimizers from a TrainConfig: SGD (momentum, Nesterov), Adam, AdamW, with weight decay that can
skip BatchNorm/LayerNorm scales and offsets and every bias.

Weight decay is Keras' ``weight_decay`` argument, which every Keras optimizer applies *decoupled*
(Loshchilov & Hutter 2019): before the gradient update, ``w -= lr_t * weight_decay * w`` with the
current scheduled ``lr_t``, outside momentum and Adam's normalisation. The recipes' numbers come
from torch, where that is true only of ``AdamW``:

- AdamW (Cars thesis: lr 1e-3, weight decay 0.6): torch does ``w *= 1 - lr * wd`` too, so the
  number carries over unchanged.
- SGD (Hotel-ID 5e-4, VIPriors 1e-4): torch adds ``wd * w`` to the gradient (coupled L2), which then
  passes through momentum; at steady state that shrinks ``w`` by about ``lr * wd / (1 - momentum)``
  per step, i.e. 10x more than Keras' decoupled decay with the same number at momentum 0.9. To match
  a torch SGD recipe set ``weight_decay = torch_wd / (1 - momentum)`` (5e-3 for 5e-4).
- Adam: torch's ``weight_decay`` is coupled L2 scaled by Adam's per-weight step size; Keras'
  ``Adam(weight_decay=...)`` is AdamW. There is no exact conversion; prefer ``adamw``.
"""

import keras

from keras_fgvc.training.schedules import (  # noqa: F401  (make_schedule re-exported for old imports)
    LinearWarmup,
    REFERENCE_BATCH,
    SCHEDULES,
    make_schedule,
    scaled_learning_rate,
    schedule_callbacks,
)

OPTIMIZERS = ("sgd", "adam", "adamw")

# Variables that get no weight decay when decay_bn_and_bias=False: biases and normalisation
# scales/offsets (timm's rule, `param_groups_weight_decay`: no decay for 1-d params and biases).
# Keras matches this with re.search against `variable.name`, and what that name is depends on the
# backend: on TensorFlow the optimizer looks at the underlying tf.Variable ("bias_proj/bias:0",
# "bias_proj/bias/replica_1:0" on MirroredStrategy replicas; HubBackbone's SavedModel variables
# keep their TF names, ".../batch_normalization/gamma:0"), on JAX at the Keras variable ("bias").
# So the pattern takes the last path component exactly: "bias_proj/kernel:0" and "kernel" still decay.
NO_WEIGHT_DECAY_PATTERN = r"(?:^|/)(?:bias|gamma|beta)(?:/replica_\d+)?(?::\d+)?$"


class VariableLearningRates:
    """Mixin for a Keras optimizer: chosen variables step with ``learning_rate * multiplier``.

    Keras 3 optimizers have one learning rate for all variables (no torch-style parameter
    groups). ``keras.optimizers.MultiOptimizer`` gives each group its own optimizer, but it has no
    ``learning_rate`` (reading or assigning it raises, and ``ReduceLROnPlateau`` for
    ``schedule=plateau`` and the W&B learning-rate log do both), each group then runs its own
    schedule and step counter, and Adam's moments would be split. Scaling gradients instead is
    wrong for Adam (scale-invariant). So this scales the learning rate that Keras passes to
    ``update_step`` per variable: one optimizer, one schedule, one state; its ``learning_rate`` is
    the base (head) rate. Decoupled weight decay (``lr * weight_decay * w``) gets the same
    multiplier, as in torch parameter groups.

    ``multipliers``: ``[(variables, multiplier), ...]``; other variables use multiplier 1. Set by
    :func:`make_optimizer`; not part of ``get_config`` (the engine rebuilds the optimizer).
    """

    def set_learning_rate_multipliers(self, multipliers):
        self._lr_multipliers = {self._var_key(v): float(m) for variables, m in multipliers for v in variables}

    def learning_rate_multiplier(self, variable) -> float:
        return getattr(self, "_lr_multipliers", {}).get(self._var_key(variable), 1.0)

    def _use_weight_decay(self, variable):
        # Scaled variables decay in update_step (with their own rate), not in Keras' decay pass.
        return self.learning_rate_multiplier(variable) == 1.0 and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.learning_rate_multiplier(variable)
        if multiplier == 1.0:
            return super().update_step(gradient, variable, learning_rate)
        learning_rate = keras.ops.multiply(keras.ops.cast(learning_rate, variable.dtype), multiplier)
        if self.weight_decay is not None and super()._use_weight_decay(variable):
            decay = keras.ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, keras.ops.multiply(variable, keras.ops.multiply(decay, learning_rate)))
        return super().update_step(gradient, variable, learning_rate)


_SCALED = {}


def _with_multipliers(optimizer_class):
    """``optimizer_class`` with :class:`VariableLearningRates` mixed in (one class per base)."""
    if optimizer_class not in _SCALED:
        _SCALED[optimizer_class] = type(optimizer_class.__name__, (VariableLearningRates, optimizer_class), {})
    return _SCALED[optimizer_class]


def make_optimizer(train_cfg, steps_per_epoch: int, global_batch: int = REFERENCE_BATCH,
                   lr_multipliers=()) -> keras.optimizers.Optimizer:
    """The optimizer a TrainConfig describes, with its learning-rate schedule.

    Args:
        train_cfg: a TrainConfig (``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``,
            ``decay_bn_and_bias`` and the schedule fields read by
            :func:`keras_fgvc.training.schedules.make_schedule`).
        steps_per_epoch: optimizer steps in one epoch (the schedule counts steps).
        global_batch: the batch summed over replicas, for ``lr_scaling="linear"``; the default 256
            leaves the learning rate unscaled.
        lr_multipliers: ``[(variables, multiplier), ...]``: those variables step with
            ``multiplier`` times the scheduled rate, weight decay included (the fine-tuning
            recipe's lower backbone rate, ``train.finetune.backbone_lr_multiplier``); see
            :class:`VariableLearningRates`.

    Returns:
        A new, unbuilt ``keras.optimizers.SGD``, ``Adam`` or ``AdamW``. With
        ``decay_bn_and_bias=False`` it already excludes biases and normalisation gamma/beta from
        weight decay (by name, see ``NO_WEIGHT_DECAY_PATTERN``); nothing needs the model first.
        ``adam``/``adamw`` keep Keras' betas and epsilon (``momentum`` is SGD-only).

    Example:
        >>> optimizer = make_optimizer(cfg.train, steps_per_epoch=128, global_batch=64)  # doctest: +SKIP
        >>> model.compile(optimizer=optimizer, loss=...)  # doctest: +SKIP
        >>> model.fit(ds, callbacks=schedule_callbacks(cfg.train))  # doctest: +SKIP
    """
    if train_cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown train.optimizer {train_cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
    if train_cfg.weight_decay < 0:
        raise ValueError(f"train.weight_decay must be >= 0, got {train_cfg.weight_decay}.")
    learning_rate = make_schedule(train_cfg, steps_per_epoch, global_batch)
    # None, not 0.0: Keras skips the decay pass only for None (0.0 would still assign every weight).
    weight_decay = float(train_cfg.weight_decay) or None

    scaled = [(variables, m) for variables, m in lr_multipliers if float(m) != 1.0 and len(variables)]

    def make(optimizer_class, *args, **kwargs):
        return (_with_multipliers(optimizer_class) if scaled else optimizer_class)(*args, **kwargs)

    if train_cfg.optimizer == "sgd":
        optimizer = make(
            keras.optimizers.SGD, learning_rate, momentum=train_cfg.momentum, nesterov=bool(train_cfg.nesterov),
            weight_decay=weight_decay,
        )
    elif train_cfg.optimizer == "adam":
        optimizer = make(keras.optimizers.Adam, learning_rate, weight_decay=weight_decay)
    else:
        # AdamW refuses weight_decay=None; 0.0 is a valid (if pointless) AdamW.
        optimizer = make(keras.optimizers.AdamW, learning_rate, weight_decay=float(train_cfg.weight_decay))
    if scaled:
        optimizer.set_learning_rate_multipliers(scaled)

    if weight_decay and not train_cfg.decay_bn_and_bias:
        # Must happen before the optimizer is built (first apply); Keras raises afterwards.
        optimizer.exclude_from_weight_decay(var_names=[NO_WEIGHT_DECAY_PATTERN])
    return optimizer
