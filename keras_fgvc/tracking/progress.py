"""Progress bars on long loops (training, prediction, embedding extraction) that stay quiet in logs.

A terminal gets live bars; a log file (CI, a batch job, ``python run.py > log``) gets one line per
training epoch that names the stage (``EpochLine``) and nothing per prediction batch, since a
redrawn bar becomes thousands of lines there. ``KERAS_FGVC_PROGRESS=1`` / ``0`` forces bars on / off.
Every stage starts with a header line either way (``training/stages.py``).
"""

import os
import sys
import time

import keras

ENV = "KERAS_FGVC_PROGRESS"


def interactive() -> bool:
    """Whether to draw live progress bars: the override, else whether stdout is a terminal."""
    forced = os.environ.get(ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def fit_verbosity() -> int:
    """Keras ``fit`` verbosity: a live bar per epoch (1), or nothing (0) when ``EpochLine`` writes
    the epoch's line (Keras' own ``verbose=2`` line does not say which stage it belongs to)."""
    return 1 if interactive() else 0


class EpochLine(keras.callbacks.Callback):
    """One line per epoch for logs: ``stage 'mask' epoch 3/12: loss 0.4123, val_loss 0.3811 (12.3 s)``."""

    def __init__(self, stage: str, epochs: int):
        super().__init__()
        self.stage, self.epochs, self.started = stage, epochs, None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = ", ".join(f"{key} {float(value):.4g}" for key, value in (logs or {}).items()
                           if getattr(value, "ndim", 0) == 0 and key != "learning_rate")
        seconds = time.perf_counter() - (self.started or time.perf_counter())
        print(f"stage '{self.stage}' epoch {epoch + 1}/{self.epochs}: {values} ({seconds:.1f} s)", flush=True)


def predict_verbosity() -> int:
    """Keras ``predict`` verbosity: a live bar (1) or silence (0)."""
    return 1 if interactive() else 0
