"""One training run of a model on tf.data, with checkpoints, CSV/W&B logging and early stopping."""

import math
import os

import keras

from keras_fgvc.tracking.wandb_run import WandbLogger
from keras_fgvc.training.optimizers import make_optimizer


def compile_classifier(model, train_cfg, steps_per_epoch: int, num_classes: int, jit_compile=False):
    """SGD/AdamW + sparse categorical cross-entropy on the logits, accuracy and F1 metrics."""
    from keras_fgvc.evaluation.metrics import SparseF1Score

    average = "binary" if num_classes == 2 else "macro"
    model.compile(
        optimizer=make_optimizer(train_cfg, steps_per_epoch),
        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        metrics={"logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), SparseF1Score(num_classes, average=average)]},
        jit_compile=jit_compile,
    )


def fit(model, train_ds, val_ds, train_cfg, out_dir: str, num_train: int, batch_size: int, wandb_run=None):
    """Train, keeping the best-val-loss weights; returns the Keras History."""
    os.makedirs(out_dir, exist_ok=True)
    steps = train_cfg.steps_per_epoch or math.ceil(num_train / batch_size)
    callbacks = [
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(out_dir, "checkpoint.weights.h5"), save_weights_only=True, monitor="val_loss", save_best_only=True
        ),
    ]
    if train_cfg.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=train_cfg.early_stopping_patience, restore_best_weights=True)
        )
    if wandb_run is not None:
        callbacks.append(WandbLogger(wandb_run))
    return model.fit(
        train_ds.repeat() if train_cfg.steps_per_epoch else train_ds,
        validation_data=val_ds,
        epochs=train_cfg.epochs,
        steps_per_epoch=train_cfg.steps_per_epoch,
        callbacks=callbacks,
        verbose=2,
    )
