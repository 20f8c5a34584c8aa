"""Optimizers and learning-rate schedules from config: SGD (momentum) or AdamW, constant or
cosine decay to 0 with optional linear warm-up (VIPriors: 1 epoch warm-up then cosine)."""

import keras


def make_schedule(train_cfg, steps_per_epoch: int):
    total = max(1, int(train_cfg.epochs * steps_per_epoch))
    warmup = int(train_cfg.warmup_epochs * steps_per_epoch)
    if train_cfg.schedule == "constant":
        return train_cfg.learning_rate
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(1, total - warmup), warmup_target=train_cfg.learning_rate, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(train_cfg.learning_rate, total)


def make_optimizer(train_cfg, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer a TrainConfig describes.

    Example:
        >>> make_optimizer(cfg.train, steps_per_epoch=38)  # doctest: +SKIP
    """
    schedule = make_schedule(train_cfg, steps_per_epoch)
    weight_decay = train_cfg.weight_decay or None
    if train_cfg.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=train_cfg.momentum, weight_decay=weight_decay)
    return keras.optimizers.AdamW(schedule, weight_decay=train_cfg.weight_decay)
