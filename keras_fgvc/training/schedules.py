"""Learning-rate schedules from a TrainConfig, in optimizer steps.

Every schedule is a function of the optimizer's step counter ``optimizer.iterations``, which Keras
passes *before* incrementing it: the first batch of epoch ``e`` (0-based) sees step
``e * steps_per_epoch``. The epoch-level torch schedulers the recipes come from
(``MultiStepLR``, ``ExponentialLR``, stepped once per epoch) give epoch ``e`` one value for all its
batches, and the boundaries below are placed so that Keras gives the same value on the same batches.

Schedules (``train.schedule``):
  cosine:      lr * 0.5 * (1 + cos(pi * t / T)) down to 0 at the last step (Loshchilov & Hutter 2017,
               SGDR without restarts; Hotel-ID "cosine annealing to 0", VIPriors "then cosine").
  multistep:   lr * gamma ** (number of milestones <= epoch) (torch ``MultiStepLR``; Cars thesis:
               milestones [67, 82, 95, 107], gamma 0.1).
  exponential: lr * decay_rate ** epoch, constant within an epoch (torch ``ExponentialLR`` stepped per
               epoch; Keras ``ExponentialDecay(staircase=True)`` with one epoch per decay step).
  plateau:     a constant lr that ``ReduceLROnPlateau`` (see :func:`schedule_callbacks`) multiplies by
               ``plateau_factor`` after ``plateau_patience`` epochs without improvement of
               ``plateau_monitor`` (torch ``ReduceLROnPlateau``; Cars thesis ablation).
  constant:    lr.

``warmup_epochs > 0`` ramps the learning rate linearly from 0 over the first
``round(warmup_epochs * steps_per_epoch)`` steps (Goyal et al. 2017, "Accurate, Large Minibatch
SGD", sec. 2.2 gradual warm-up; VIPriors: 1 epoch). For cosine the decay then runs over the
remaining steps (Keras ``CosineDecay``'s own warm-up); for multistep, exponential and constant the
ramp multiplies the schedule, whose milestones stay counted from the start of training (see
:class:`LinearWarmup`). Plateau with warm-up is refused: ``ReduceLROnPlateau`` needs a settable
(float) learning rate, a warm-up needs a schedule, and no recipe uses both.

``lr_scaling="linear"`` multiplies ``learning_rate`` by ``global_batch / 256`` first (Goyal et al.
2017, sec. 2.1 linear scaling rule; VIPriors: "lr = 0.1 * B / 256").
"""

import math

import keras
from keras import ops

SCHEDULES = ("cosine", "multistep", "plateau", "exponential", "constant")
LR_SCALINGS = ("none", "linear")

# The batch size the linear scaling rule is normalised to (Goyal et al. 2017: lr = 0.1 * B / 256).
REFERENCE_BATCH = 256


def scaled_learning_rate(train_cfg, global_batch: int) -> float:
    """The base learning rate after the batch-size scaling rule.

    Args:
        train_cfg: a TrainConfig (reads ``learning_rate`` and ``lr_scaling``).
        global_batch: the batch summed over all replicas (what one optimizer step sees).

    Returns:
        ``learning_rate`` for ``lr_scaling="none"``; ``learning_rate * global_batch / 256`` for
        ``"linear"``.

    Example:
        >>> scaled_learning_rate(SimpleNamespace(learning_rate=0.1, lr_scaling="linear"), 512)
        0.2
    """
    if train_cfg.lr_scaling == "none":
        return float(train_cfg.learning_rate)
    if train_cfg.lr_scaling == "linear":
        return float(train_cfg.learning_rate) * global_batch / REFERENCE_BATCH
    raise ValueError(f"Unknown train.lr_scaling {train_cfg.lr_scaling!r}; choose one of {', '.join(LR_SCALINGS)}.")


def warmup_steps(train_cfg, steps_per_epoch: int) -> int:
    """``warmup_epochs`` in whole optimizer steps (rounded to nearest)."""
    if train_cfg.warmup_epochs < 0:
        raise ValueError(f"train.warmup_epochs must be >= 0, got {train_cfg.warmup_epochs}.")
    return int(round(train_cfg.warmup_epochs * steps_per_epoch))


@keras.saving.register_keras_serializable(package="keras_fgvc")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Multiply a learning rate (or schedule) by ``min(1, step / warmup_steps)``.

    Keras has warm-up only inside ``CosineDecay``; multistep, exponential and constant learning
    rates need this wrapper. The wrapped schedule sees the absolute step, so multistep milestones
    and exponential epochs keep counting from the start of training, as in the configs.

    Args:
        after: a float learning rate or a ``LearningRateSchedule`` (the value after warm-up).
        warmup_steps: length of the ramp in optimizer steps; 0 turns the wrapper into ``after``.

    Example:
        >>> schedule = LinearWarmup(0.1, warmup_steps=10)
        >>> float(schedule(5))  # half way up the ramp: 0.05 (in float32)
    """

    def __init__(self, after, warmup_steps):
        super().__init__()
        self.after = after
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if isinstance(self.after, keras.optimizers.schedules.LearningRateSchedule):
            value = ops.cast(self.after(step), "float32")
        else:
            value = ops.convert_to_tensor(float(self.after), "float32")
        if self.warmup_steps <= 0:
            return value
        return value * ops.minimum(step / float(self.warmup_steps), 1.0)

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.optimizers.schedules.serialize(after)
        return {"after": after, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


def _multistep(lr, train_cfg, steps_per_epoch):
    milestones = [int(m) for m in train_cfg.milestones]
    if not milestones:
        return lr
    if any(b <= a for a, b in zip(milestones, milestones[1:])) or milestones[0] <= 0:
        raise ValueError(f"train.milestones must be positive and strictly increasing, got {milestones}.")
    # PiecewiseConstantDecay gives values[i] while step <= boundaries[i]; torch MultiStepLR decays
    # from the first batch of epoch m (step m * steps_per_epoch), hence the - 1.
    boundaries = [m * steps_per_epoch - 1 for m in milestones]
    values = [lr * train_cfg.gamma**i for i in range(len(milestones) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_schedule(train_cfg, steps_per_epoch: int, global_batch: int = REFERENCE_BATCH):
    """The learning rate an optimizer gets: a float or a ``LearningRateSchedule`` over steps.

    Args:
        train_cfg: a TrainConfig (``epochs``, ``learning_rate``, ``lr_scaling``, ``schedule``,
            ``warmup_epochs``, ``milestones``, ``gamma``, ``decay_rate``).
        steps_per_epoch: optimizer steps in one epoch.
        global_batch: the batch summed over replicas, for ``lr_scaling="linear"``.

    Returns:
        A float for ``constant`` and ``plateau`` without warm-up (``plateau`` must stay a float:
        ``ReduceLROnPlateau`` assigns the optimizer's learning-rate variable), otherwise a schedule.

    Example:
        >>> schedule = make_schedule(cfg.train, steps_per_epoch=38, global_batch=64)  # doctest: +SKIP
        >>> float(schedule(0))  # doctest: +SKIP
    """
    if train_cfg.schedule not in SCHEDULES:
        raise ValueError(f"Unknown train.schedule {train_cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    steps_per_epoch = max(1, int(steps_per_epoch))
    lr = scaled_learning_rate(train_cfg, global_batch)
    warmup = warmup_steps(train_cfg, steps_per_epoch)
    total = max(1, int(math.ceil(train_cfg.epochs * steps_per_epoch)))

    if train_cfg.schedule == "plateau":
        if warmup:
            raise ValueError(
                "train.schedule=plateau cannot take train.warmup_epochs > 0: ReduceLROnPlateau needs a float "
                "learning rate and a warm-up needs a schedule. Set warmup_epochs=0 or use another schedule."
            )
        return lr
    if train_cfg.schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0, max(1, total - warmup), warmup_target=lr, warmup_steps=warmup
            )
        return keras.optimizers.schedules.CosineDecay(lr, total)

    if train_cfg.schedule == "multistep":
        after = _multistep(lr, train_cfg, steps_per_epoch)
    elif train_cfg.schedule == "exponential":
        # staircase: one value per epoch, like torch ExponentialLR stepped at each epoch end.
        after = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=steps_per_epoch, decay_rate=train_cfg.decay_rate, staircase=True
        )
    else:  # constant
        after = lr
    return LinearWarmup(after, warmup) if warmup else after


def _plateau_mode(monitor: str) -> str:
    # Keras' mode="auto" raises at the first epoch end for metrics it cannot classify (our F1,
    # MAP@5); losses and errors go down, every other metric we log goes up.
    name = monitor.lower()
    return "min" if ("loss" in name or "error" in name) else "max"


def schedule_callbacks(train_cfg) -> list:
    """Callbacks a schedule needs during ``fit``: ``[ReduceLROnPlateau]`` for plateau, else ``[]``.

    Args:
        train_cfg: a TrainConfig (``schedule``, ``warmup_epochs``, ``plateau_*``).

    Returns:
        A list of ``keras.callbacks.Callback``. The optimizer must have been made by
        :func:`keras_fgvc.training.optimizers.make_optimizer` from the same config, so its
        learning rate is a float variable the callback can assign.

    Example:
        >>> model.fit(ds, callbacks=[*other_callbacks, *schedule_callbacks(cfg.train)])  # doctest: +SKIP
    """
    if train_cfg.schedule not in SCHEDULES:
        raise ValueError(f"Unknown train.schedule {train_cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if train_cfg.schedule != "plateau":
        return []
    if train_cfg.warmup_epochs > 0:
        raise ValueError("train.schedule=plateau cannot take train.warmup_epochs > 0 (see make_schedule).")
    # min_delta, cooldown and min_lr stay at the Keras defaults (1e-4 absolute, 0, 0); torch's
    # threshold 1e-4 is relative, a negligible difference at loss scale ~1.
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor=train_cfg.plateau_monitor,
            factor=train_cfg.plateau_factor,
            patience=train_cfg.plateau_patience,
            mode=_plateau_mode(train_cfg.plateau_monitor),
        )
    ]
