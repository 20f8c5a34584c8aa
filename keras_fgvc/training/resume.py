"""What a stage folder says about an earlier run, and how a killed stage continues (``resume=true``).

The run directory ``<runs_root>/<pipeline>/<name>`` is a function of the config alone (``name``
defaults to "default", never a timestamp), so the same command line plus ``resume=true`` finds
the killed run. A stage with ``finished.json`` is not trained again (its best weights are loaded);
a stage with a backup continues from its last completed epoch: weights, optimizer state and step
(the schedule position), best-checkpoint tracking, early-stopping and plateau counters,
history.csv, and the order of the training batches. Without ``resume=true`` a stage that has a
backup is refused: an interrupted run is never overwritten or continued by accident.

Data order: the engine feeds the training set as ``build(...).repeat()`` with
``steps_per_epoch``, so tf.data draws one shuffle permutation per pass over the rows, in order
(seeded by ``cfg.seed``; the i-th iterator of the shuffle gets the i-th permutation). A fresh
process starts again at the first permutation, so a resumed run first creates (and drops) one
iterator per pass already trained, and skips the batches of a pass it stopped inside: epoch ``e``
then sees the same batches as in an uninterrupted run. Random draws in the training step
(dropout, augmentation placed in the model) continue from the seed-generator states in the
backup. Not replayed: random augmentation placed in tf.data (``augment.runs_in=data``,
CutMix/MixUp), whose generators restart with the process; and under a multi-device strategy
Keras reads one batch before ``fit`` to build the model, whose prefetching may draw a
permutation ahead on a data set of a few batches per pass.
"""

import os
import shutil

from keras_fgvc.training.callbacks import (
    BACKUP_DIR,
    BEST,
    CHECKPOINT_STATE,
    HISTORY,
    LAST,
    ResumableBackup,
)

# Written when a stage's training has ended (all epochs, early stop or NaN stop): its info and
# history. With resume=true such a stage is not trained again.
FINISHED = "finished.json"


def is_finished(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, FINISHED))


def interrupted_epochs(folder: str) -> int:
    """Completed epochs in the resume backup of a stage folder that has not finished (0: none)."""
    if is_finished(folder):
        return 0
    return ResumableBackup.completed_epochs(os.path.join(folder, BACKUP_DIR))


def start_fresh(folder: str):
    """Remove what an earlier run of this stage left (weights, history, backup, markers): a new
    run must not report, load or resume another run's files."""
    for name in (BEST, LAST, CHECKPOINT_STATE, HISTORY, FINISHED):
        if os.path.exists(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))
    shutil.rmtree(os.path.join(folder, BACKUP_DIR), ignore_errors=True)


def read_history(path: str) -> dict:
    """history.csv as ``{column: [values]}`` (what ``History.history`` holds), epoch column dropped."""
    import pandas as pd

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return {}
    table = pd.read_csv(path)
    return {column: table[column].tolist() for column in table.columns if column != "epoch"}


def resumed_dataset(train_ds, completed_epochs: int, steps: int, fallback_batches: int):
    """The repeated training stream positioned where an uninterrupted run is at ``completed_epochs``.

    Every new iterator of a tf.data shuffle with a fixed seed draws the next permutation of its
    sequence (and a repeated dataset makes one iterator per pass), so creating and dropping one
    iterator per finished pass advances the order as training would have, without reading the
    data; the rest of an unfinished pass (``steps_per_epoch`` that is not a whole pass) is skipped.
    """
    cardinality = int(train_ds.cardinality())
    per_pass = cardinality if cardinality > 0 else fallback_batches
    passes, offset = divmod(completed_epochs * steps, per_pass)
    for _ in range(passes):
        iterator = iter(train_ds)
        del iterator
    repeated = train_ds.repeat()
    return repeated.skip(offset) if offset else repeated
