"""One training run of a model on tf.data, with checkpoints, CSV/W&B logging and early stopping."""

import math
import os

import keras

from keras_fgvc.tracking.wandb_run import WandbLogger
from keras_fgvc.training.optimizers import make_optimizer

# The best-val-loss weights of a run, in its output folder.
CHECKPOINT = "checkpoint.weights.h5"


def compile_classifier(model, train_cfg, steps_per_epoch: int, num_classes: int, jit_compile=False) -> keras.Model:
    """A compiled logits-only view of ``model`` (same layers and weights): SGD/AdamW, sparse
    categorical cross-entropy, accuracy and F1.

    The view exists because Keras asks for a target for every output of a dict-output model,
    and the embedding output has none in softmax training.
    """
    from keras_fgvc.evaluation.metrics import SparseF1Score

    classifier = keras.Model(model.inputs, model.output["logits"], name=f"{model.name}_classifier")
    average = "binary" if num_classes == 2 else "macro"
    classifier.compile(
        optimizer=make_optimizer(train_cfg, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"), SparseF1Score(num_classes, average=average)],
        jit_compile=jit_compile,
    )
    return classifier


def fit(model, train_ds, val_ds, train_cfg, out_dir: str, num_train: int, batch_size: int, wandb_run=None):
    """Train, keeping the best-val-loss weights; returns the Keras History."""
    os.makedirs(out_dir, exist_ok=True)
    steps = train_cfg.steps_per_epoch or math.ceil(num_train / batch_size)
    checkpoint = os.path.join(out_dir, CHECKPOINT)
    callbacks = [
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv")),
        keras.callbacks.ModelCheckpoint(checkpoint, save_weights_only=True, monitor="val_loss", save_best_only=True),
    ]
    if train_cfg.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=train_cfg.early_stopping_patience, restore_best_weights=True)
        )
    if wandb_run is not None:
        callbacks.append(WandbLogger(wandb_run))
    history = model.fit(
        train_ds.repeat() if train_cfg.steps_per_epoch else train_ds,
        validation_data=val_ds,
        epochs=train_cfg.epochs,
        steps_per_epoch=train_cfg.steps_per_epoch,
        callbacks=callbacks,
        verbose=2,
    )
    model.load_weights(checkpoint)  # the best epoch, not the last
    return history
