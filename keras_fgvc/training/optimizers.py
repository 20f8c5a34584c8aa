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


def make_optimizer(train_cfg, steps_per_epoch: int, global_batch: int = REFERENCE_BATCH) -> keras.optimizers.Optimizer:
    """The optimizer a TrainConfig describes, with its learning-rate schedule.

    Args:
        train_cfg: a TrainConfig (``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``,
            ``decay_bn_and_bias`` and the schedule fields read by
            :func:`keras_fgvc.training.schedules.make_schedule`).
        steps_per_epoch: optimizer steps in one epoch (the schedule counts steps).
        global_batch: the batch summed over replicas, for ``lr_scaling="linear"``; the default 256
            leaves the learning rate unscaled.

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

    if train_cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=train_cfg.momentum, nesterov=bool(train_cfg.nesterov), weight_decay=weight_decay
        )
    elif train_cfg.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
    else:
        # AdamW refuses weight_decay=None; 0.0 is a valid (if pointless) AdamW.
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=float(train_cfg.weight_decay))

    if weight_decay and not train_cfg.decay_bn_and_bias:
        # Must happen before the optimizer is built (first apply); Keras raises afterwards.
        optimizer.exclude_from_weight_decay(var_names=[NO_WEIGHT_DECAY_PATTERN])
    return optimizer
