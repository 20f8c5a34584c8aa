"""Progress bars on long loops (training, prediction, embedding extraction) that stay quiet in logs.

A terminal gets live bars; a log file (CI, a batch job, ``python run.py > log``) gets one line per
training epoch and nothing per prediction batch, since a redrawn bar becomes thousands of lines
there. ``KERAS_FGVC_PROGRESS=1`` / ``0`` forces bars on / off.
"""

import os
import sys

ENV = "KERAS_FGVC_PROGRESS"


def interactive() -> bool:
    """Whether to draw live progress bars: the override, else whether stdout is a terminal."""
    forced = os.environ.get(ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def fit_verbosity() -> int:
    """Keras ``fit`` verbosity: a live bar per epoch (1) or one summary line per epoch (2)."""
    return 1 if interactive() else 2


def predict_verbosity() -> int:
    """Keras ``predict`` verbosity: a live bar (1) or silence (0)."""
    return 1 if interactive() else 0
