"""Headless matplotlib for the run directory's plots: one place that picks the backend and saves."""

import os


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display on CI, Kaggle or servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, dpi: int = 80):
    """Write ``figure`` to ``path`` (parent folders created) and close it; returns ``path``.

    The image goes to a sibling temp file renamed over ``path``, so a reader (a report page, a W&B
    upload, a killed run) never sees half a PNG; the temp name keeps the extension, from which
    matplotlib picks the format.
    """
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(os.fspath(path))
    temporary = f"{stem}.tmp-{os.getpid()}{extension}"
    try:
        figure.savefig(temporary, dpi=dpi)
        os.replace(temporary, path)
    finally:
        pyplot().close(figure)
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
