"""The callbacks every stage trains with: best/last checkpoints, CSV (+ TensorBoard, W&B) logs,
early stopping and the NaN guard on one monitored metric, and the schedule's own callbacks."""

import math
import os
import shutil
import tempfile

import keras

BEST = "best.weights.h5"
LAST = "last.weights.h5"


def monitor_mode(monitor: str) -> str:
    """"min" for losses and errors, "max" for everything else (accuracy, F1, MAP@5)."""
    return "min" if "loss" in monitor or "error" in monitor else "max"


def save_weights_atomically(model: keras.Model, path: str):
    """``model.save_weights(path)`` through a temp file and ``os.replace``: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".weights.h5")
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def copy_atomically(source: str, path: str):
    """Copy ``source`` to ``path`` through a temp file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".weights.h5")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class BestAndLastCheckpoint(keras.callbacks.Callback):
    """After each epoch: ``last.weights.h5`` always, ``best.weights.h5`` when ``monitor`` improved.

    Keras' ``ModelCheckpoint`` saves the model being fitted (the Trainer, with its teacher and loss
    state) in place; later stages and exports want the inference model's weights alone, and a
    killed run must never leave a truncated file, so this writes ``model`` atomically.

    Args:
        model: the inference model whose weights are saved (shares variables with the trainer).
        folder: the stage directory.
        monitor: a logged metric, e.g. "val_loss".
    """

    def __init__(self, model, folder, monitor="val_loss"):
        super().__init__()
        self.target = model
        self.folder = folder
        self.monitor = monitor
        self.mode = monitor_mode(monitor)
        self.best = None
        self.best_epoch = None

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(float(logs.get("loss", 0.0))):
            return  # TerminateOnNaN stops the run; the files keep the last good weights
        value = logs.get(self.monitor)
        save_weights_atomically(self.target, os.path.join(self.folder, LAST))
        if value is None:
            raise KeyError(f"checkpoint monitor '{self.monitor}' is not logged; logged: {', '.join(sorted(logs or {}))}")
        if self._improved(float(value)):
            self.best, self.best_epoch = float(value), epoch
            # The same weights were just written: copying the file costs a fraction of serialising again.
            copy_atomically(os.path.join(self.folder, LAST), os.path.join(self.folder, BEST))


def stage_callbacks(train_cfg, folder, model, monitor, wandb_run=None, tensorboard=False) -> list:
    """The callback list of one stage (see the module docstring)."""
    from keras_fgvc.tracking.wandb_run import WandbLogger
    from keras_fgvc.training.schedules import schedule_callbacks

    os.makedirs(folder, exist_ok=True)
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        BestAndLastCheckpoint(model, folder, monitor),
        keras.callbacks.CSVLogger(os.path.join(folder, "history.csv")),
        *schedule_callbacks(train_cfg),
    ]
    if train_cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=monitor_mode(monitor), patience=train_cfg.early_stopping_patience))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(folder, "tensorboard")))
    if wandb_run is not None:
        callbacks.append(WandbLogger(wandb_run))
    return callbacks
