"""Headless matplotlib for the run directory's plots: one place that picks the backend and saves."""

import os


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display on CI, Kaggle or servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, dpi: int = 80):
    """Write ``figure`` to ``path`` (parent folders created) and close it; returns ``path``."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
    return path
