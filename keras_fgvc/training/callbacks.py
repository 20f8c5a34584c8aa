"""The callbacks every stage trains with: best/last checkpoints, CSV (+ TensorBoard, W&B) logs,
early stopping on one monitored metric, the NaN guard, the resume backup and the schedule's own
callbacks.

Everything a callback writes goes through a temp file (``.tmp-*``) and ``os.replace``, so a run
killed at any moment (SIGKILL, preemption) leaves either the previous file or the new one.
"""

import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time

import keras
import numpy as np

from keras_fgvc.atomic import naming
from keras_fgvc.tracking.run_dir import atomic_write_text, write_json

BEST = "best.weights.h5"
LAST = "last.weights.h5"
# BestAndLastCheckpoint's state next to the weights: monitor, best value and epoch, last saved epoch.
CHECKPOINT_STATE = "checkpoint.json"
HISTORY = "history.csv"
# The folder of a stage's resume backup (ResumableBackup): deleted once the stage has finished.
BACKUP_DIR = "backup"
BACKUP_METADATA = "training_metadata.json"
TMP_PREFIX = ".tmp-"
# Test-only: a run with this environment variable set to N kills itself with SIGKILL at the end
# of the first training batch of epoch N (0-based), i.e. after N committed epochs and in the middle
# of the next one. tests/training/test_resume.py uses it to simulate a preempted machine.
KILL_ENV = "KERAS_FGVC_TEST_SIGKILL_AT_EPOCH"
# Test-only, with KILL_ENV: instead of killing itself, the process writes ``<this folder>/<pid>``
# at that point and waits there for the test to SIGKILL it. Workers of one multi-worker cluster
# use it to be killed together at the same point with no collective in flight: a worker that
# killed itself first could take its peer down with an error exit (its collective or the
# coordination service fails) before the peer reached its own kill.
HOLD_ENV = "KERAS_FGVC_TEST_HOLD_FOR_SIGKILL_DIR"


def monitor_mode(monitor: str) -> str:
    """"min" for losses and errors, "max" for everything else (accuracy, F1, MAP@5)."""
    return "min" if "loss" in monitor or "error" in monitor else "max"


def save_weights_atomically(model: keras.Model, path: str):
    """``model.save_weights(path)`` through a temp file and ``os.replace``: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=".weights.h5")
    os.close(fd)
    try:
        with naming(tmp):
            model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def copy_atomically(source: str, path: str):
    """Copy ``source`` to ``path`` through a temp file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=TMP_PREFIX, suffix=".weights.h5")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_partial_files(folder: str) -> list[str]:
    """Delete the temp files a killed writer left in ``folder`` (not recursive): ``.tmp-*`` (weights)
    and ``.<name>.*.tmp`` (``atomic_open``: tables, JSON, history); returns them.

    Only call this where no other process writes: the stage folder of the stage about to train.
    """
    if not os.path.isdir(folder):
        return []
    partial = [os.path.join(folder, name) for name in os.listdir(folder)
               if name.startswith(TMP_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))]
    for path in partial:
        os.unlink(path)
    return partial


def weights_are_finite(model: keras.Model) -> bool:
    """True when every weight of ``model`` (BatchNorm statistics included) is finite."""
    return all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


def _number(value):
    """A JSON-safe copy of a callback counter: Python int/float/None (numpy scalars converted)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    return float(value)


class NanGuard(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers where: stops at the first batch whose loss is NaN or inf.

    Keras' callback prints "Batch b: Invalid loss" and nothing else; a stage needs the epoch too,
    and a record in its info (``stopped``). An epoch whose losses stayed finite but whose last
    update made the weights non-finite is caught at the end of that epoch (``cause: weights``),
    before the checkpoint callbacks see it.

    Args:
        target: the inference model whose weights are checked at each epoch end (None: no check).

    Example:
        >>> guard = NanGuard(model)
        >>> trainer.fit(ds, callbacks=[guard, BestAndLastCheckpoint(model, folder, guard=guard)])  # doctest: +SKIP
        >>> guard.stopped  # None, or {"epoch": 2, "batch": 1, "loss": "nan", "cause": "loss"}  # doctest: +SKIP
    """

    def __init__(self, target=None):
        super().__init__(raise_error=False)
        self.target = target
        self.stopped = None  # {"epoch", "batch", "loss", "cause"}, epochs and batches 0-based
        self._epoch = 0
        self._batch = -1

    def on_train_begin(self, logs=None):
        self.stopped = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._batch = epoch, -1

    def on_batch_end(self, batch, logs=None):
        self._batch = batch
        loss = (logs or {}).get("loss")
        if self.stopped is None and loss is not None and not math.isfinite(float(loss)):
            self.stopped = {"epoch": self._epoch, "batch": int(batch), "loss": str(float(loss)), "cause": "loss"}
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped is None and self.target is not None and not weights_are_finite(self.target):
            loss = (logs or {}).get("loss")
            self.stopped = {"epoch": epoch, "batch": max(self._batch, 0),
                            "loss": None if loss is None else str(float(loss)), "cause": "weights"}
            self.model.stop_training = True


class BestAndLastCheckpoint(keras.callbacks.Callback):
    """After each epoch: ``last.weights.h5`` always, ``best.weights.h5`` when ``monitor`` improved.

    Keras' ``ModelCheckpoint`` saves the model being fitted (the Trainer, with its teacher and loss
    state) in place; later stages and exports want the inference model's weights alone, and a
    killed run must never leave a truncated file, so this writes ``model`` atomically. An epoch
    whose loss is not finite (or that the NaN guard stopped) writes nothing: both files keep the
    last good weights. ``checkpoint.json`` next to them records the best value and epoch, so that
    a resumed run (:meth:`restore`) keeps comparing with the best so far instead of starting over.

    Args:
        model: the inference model whose weights are saved (shares variables with the trainer).
        folder: the stage directory.
        monitor: a logged metric, e.g. "val_loss".
        guard: the stage's NanGuard; an epoch it stopped is not saved (None: the loss check alone).

    Example:
        >>> checkpoint = BestAndLastCheckpoint(model, "runs/fivek/default/mask", "val_loss")
        >>> trainer.fit(ds, validation_data=val, callbacks=[checkpoint])  # doctest: +SKIP
        >>> checkpoint.best, checkpoint.best_epoch  # doctest: +SKIP
    """

    def __init__(self, model, folder, monitor="val_loss", guard=None):
        super().__init__()
        self.target = model
        self.folder = folder
        self.monitor = monitor
        self.mode = monitor_mode(monitor)
        self.guard = guard
        self.best = None
        self.best_epoch = None
        self.last_epoch = None

    def _improved(self, value) -> bool:
        if not math.isfinite(value):
            return False  # a NaN "best" would never be beaten again
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def restore(self) -> bool:
        """Take the best value and epoch from ``checkpoint.json`` (a resumed run); False if absent."""
        path = os.path.join(self.folder, CHECKPOINT_STATE)
        if not os.path.isfile(path):
            return False
        with open(path) as f:
            state = json.load(f)
        if state.get("monitor") != self.monitor:
            from keras_fgvc.errors import UserError

            raise UserError(f"{path}: the interrupted run monitored '{state.get('monitor')}', this one "
                            f"'{self.monitor}'; resume with the same train.monitor")
        self.best, self.best_epoch, self.last_epoch = state["best"], state["best_epoch"], state["last_epoch"]
        return True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(float(logs.get("loss", 0.0))) or (self.guard is not None and self.guard.stopped):
            return  # the NaN guard stops the run; the files keep the last good weights
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"checkpoint monitor '{self.monitor}' is not logged; logged: {', '.join(sorted(logs or {}))}")
        save_weights_atomically(self.target, os.path.join(self.folder, LAST))
        self.last_epoch = epoch
        if self._improved(float(value)):
            self.best, self.best_epoch = float(value), epoch
            # The same weights were just written: copying the file costs a fraction of serialising again.
            copy_atomically(os.path.join(self.folder, LAST), os.path.join(self.folder, BEST))
        write_json(os.path.join(self.folder, CHECKPOINT_STATE), {
            "monitor": self.monitor, "mode": self.mode, "best": self.best, "best_epoch": self.best_epoch,
            "last_epoch": self.last_epoch,
        })


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, once per epoch, with an atomic commit and the callbacks' counters.

    What it keeps after every epoch: the fitted model's weights (the Trainer: network, optimizer
    slots and step counter, so the learning-rate schedule continues where it stopped; loss state
    such as center-loss centres) and the number of completed epochs, from which ``fit`` restarts.
    Keras writes ``latest.weights.h5`` and then its metadata in place: a kill between the two, or
    in the middle of either, leaves weights of one epoch with the epoch number of another, or a
    truncated file. Here each epoch's weights go to a new ``epoch-<n>.weights.h5`` (temp file +
    rename), and the metadata that names it is replaced last, so the backup is always one
    consistent epoch. The metadata also holds the counters of ``stateful`` callbacks
    (EarlyStopping's and ReduceLROnPlateau's wait/best), which Keras resets at ``on_train_begin``;
    they are restored after that, so this callback must come after them in the list. And it holds
    the states of the model's random seed generators (dropout, augmentation in the training step),
    which ``save_weights`` leaves out: without them a resumed run would draw its first epochs'
    random masks again.

    Only epoch granularity: with an integer ``save_freq`` Keras restarts the epoch from its first
    batch after a restore, replaying batches, and the optimizer step (the schedule position) no
    longer matches the epoch.

    The backup is kept when ``fit`` ends (the stage deletes it after writing its ``finished.json``)
    and is restored only with ``restore=True``: a callback list reused for several ``fit`` calls
    does not resume the previous call.

    Args:
        backup_dir: the folder of this stage's backup (nothing else may write there).
        guard: the stage's NanGuard; an epoch it stopped is not backed up (its weights are NaN).
        stateful: callbacks whose counters are saved and restored.
        restore: load the backup in ``backup_dir`` at the start of ``fit`` (a resumed run).

    Example:
        >>> backup = ResumableBackup("runs/fivek/default/mask/backup", guard, [early_stopping])
        >>> ResumableBackup.completed_epochs("runs/fivek/default/mask/backup")  # 0 without a backup
        0
    """

    COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")

    def __init__(self, backup_dir, guard=None, stateful=(), restore=False):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.guard = guard
        self.stateful = list(stateful)
        self.restore = restore
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        if self.restore:
            super().on_train_begin(logs)

    @staticmethod
    def read_metadata(backup_dir) -> dict | None:
        path = os.path.join(backup_dir, BACKUP_METADATA)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    @classmethod
    def completed_epochs(cls, backup_dir) -> int:
        """Epochs a backup in ``backup_dir`` holds (0: none)."""
        metadata = cls.read_metadata(backup_dir)
        return int(metadata["epoch"]) if metadata else 0

    def _counters(self) -> list:
        return [{name: _number(getattr(callback, name)) for name in self.COUNTERS if hasattr(callback, name)}
                for callback in self.stateful]

    def _seed_states(self) -> list:
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def _save_model(self):
        if self.guard is not None and self.guard.stopped:
            return  # never commit NaN weights
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:04d}.weights.h5"
        save_weights_atomically(self.model, os.path.join(self.backup_dir, name))
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in self._seed_states()]
        write_json(os.path.join(self.backup_dir, BACKUP_METADATA),
                   {"epoch": self._current_epoch, "batch": 0, "weights": name, "callbacks": self._counters(),
                    "seed_states": seeds})
        for old in os.listdir(self.backup_dir):  # the commit above made older epochs' weights unnecessary
            if old.startswith("epoch-") and old != name:
                os.unlink(os.path.join(self.backup_dir, old))

    def _load_model(self):
        metadata = self.read_metadata(self.backup_dir)
        if metadata is None:
            return
        # Keras' _load_model loads self._weights_path and sets the model's initial epoch.
        self._weights_path = os.path.join(self.backup_dir, metadata["weights"])
        super()._load_model()
        for callback, counters in zip(self.stateful, metadata.get("callbacks", [])):
            for name, value in counters.items():
                setattr(callback, name, value)
        states, saved = self._seed_states(), metadata.get("seed_states", [])
        if len(states) == len(saved):  # the same model (BackupAndRestore's premise) has the same generators
            for variable, value in zip(states, saved):
                variable.assign(np.asarray(value, dtype=variable.dtype))
        self.restored_epoch = int(metadata["epoch"])


class _KillAtEpoch(keras.callbacks.Callback):
    """Test-only (``KILL_ENV``): SIGKILL this process mid-epoch ``epoch``, or with ``hold_dir``
    (``HOLD_ENV``) announce that point in ``<hold_dir>/<pid>`` and wait for the test's SIGKILL."""

    def __init__(self, epoch: int, hold_dir: str | None = None):
        super().__init__()
        self.epoch = epoch
        self.hold_dir = hold_dir
        self._current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch:
            sys.stdout.flush()
            if self.hold_dir:
                atomic_write_text(os.path.join(self.hold_dir, str(os.getpid())), "")
                while True:  # the test's SIGKILL ends this
                    time.sleep(1)
            os.kill(os.getpid(), signal.SIGKILL)


def truncate_history(path: str, completed_epochs: int):
    """Keep the header and the rows of epochs < ``completed_epochs`` of a CSVLogger file.

    A killed run may have logged the epoch it was in (or half of its row) without backing it up;
    the resumed run trains that epoch again and appends its row.
    """
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    kept = lines[:1]
    for line in lines[1:]:
        first = line.split(",", 1)[0]
        if first.isdigit() and int(first) < completed_epochs and line.count(",") == lines[0].count(","):
            kept.append(line)
    atomic_write_text(path, "\n".join(kept) + "\n" if kept else "")


def stage_callbacks(train_cfg, folder, model, monitor, wandb_run=None, tensorboard=False, *, resume=False,
                    first=()) -> list:
    """The callback list of one stage (see the module docstring).

    Args:
        train_cfg: the stage's TrainConfig (schedule callbacks, early stopping).
        folder: the stage directory (checkpoints, history.csv, backup/).
        model: the inference model the checkpoints save.
        monitor: the metric that picks the best checkpoint and stops early.
        wandb_run: a W&B run to log to (None: none).
        tensorboard: also write TensorBoard logs under ``<folder>/tensorboard``.
        resume: continue an interrupted run: the backup in ``<folder>/backup`` is restored, the
            checkpoint keeps its best value so far and history.csv is appended to.
        first: callbacks that compute epoch metrics into the logs; they go first.

    Returns:
        ``[*first, NanGuard, BestAndLastCheckpoint, CSVLogger, *schedule, EarlyStopping?, TensorBoard?,
        W&B?, ResumableBackup]``; the backup comes last so that its commit follows every other
        callback's work for the epoch.

    Example:
        >>> callbacks = stage_callbacks(cfg.train, "runs/fivek/default/mask", model, "val_loss")  # doctest: +SKIP
    """
    from keras_fgvc.tracking.wandb_run import WandbLogger
    from keras_fgvc.training.schedules import schedule_callbacks

    os.makedirs(folder, exist_ok=True)
    guard = NanGuard(model)
    checkpoint = BestAndLastCheckpoint(model, folder, monitor, guard=guard)
    if resume:
        checkpoint.restore()
    stateful = schedule_callbacks(train_cfg)
    callbacks = [*first, guard, checkpoint, keras.callbacks.CSVLogger(os.path.join(folder, HISTORY), append=resume),
                 *stateful]
    if train_cfg.early_stopping_patience:
        stateful.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=monitor_mode(monitor), patience=train_cfg.early_stopping_patience))
        callbacks.append(stateful[-1])
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(folder, "tensorboard")))
    if wandb_run is not None:
        callbacks.append(WandbLogger(wandb_run))
    callbacks.append(ResumableBackup(os.path.join(folder, BACKUP_DIR), guard, stateful, restore=resume))
    if os.environ.get(KILL_ENV):
        callbacks.append(_KillAtEpoch(int(os.environ[KILL_ENV]), os.environ.get(HOLD_ENV)))
    return callbacks
