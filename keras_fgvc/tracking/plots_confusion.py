"""A confusion-matrix PNG: rows are true classes, columns predictions, cells row-normalised
(each row shows where that class's images went) and annotated with counts when small enough."""

import numpy as np

from keras_fgvc.tracking.figures import pyplot, save_figure

# Beyond this many classes per-cell count labels are unreadable (Stanford Cars has 196).
MAX_ANNOTATED_CLASSES = 20


def confusion_plot(cm, path, class_names=None, title: str = "") -> np.ndarray:
    """Write confusion matrix ``cm`` ([C, C] counts, ``cm[true, predicted]``) as a PNG at ``path``.

    Args:
        cm: square count matrix, e.g. from ``keras_fgvc.evaluation.confusion_matrix``.
        path: output file; parent folders are created.
        class_names: C tick labels (default "0".."C-1").
        title: figure title.
    Returns:
        The row-normalised matrix that was drawn (a row with no images is all zeros).

    Example:
        >>> confusion_plot([[5, 1], [2, 7]], "run/plots/confusion.png", ["bare", "mask"])  # doctest: +SKIP
    """
    plt = pyplot()

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [C, C], got shape {cm.shape}")
    names = [str(i) for i in range(len(cm))] if class_names is None else [str(c) for c in class_names]
    if len(names) != len(cm):
        raise ValueError(f"{len(names)} class names for a {len(cm)}-class matrix")
    totals = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=np.float64), where=totals > 0)
    side = min(2 + 0.5 * len(cm), 20)
    figure, axis = plt.subplots(figsize=(side, side))
    axis.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(cm))
    axis.set_xticks(ticks, names, rotation=90 if len(cm) > 10 else 0)
    axis.set_yticks(ticks, names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    if len(cm) <= MAX_ANNOTATED_CLASSES:
        for t in ticks:
            for p in ticks:
                axis.text(p, t, f"{cm[t, p]}", ha="center", va="center",
                          color="white" if normalised[t, p] > 0.5 else "black")
    figure.tight_layout()
    save_figure(figure, path)
    return normalised
