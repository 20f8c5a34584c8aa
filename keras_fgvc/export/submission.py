"""Submission and prediction CSV writers, written atomically.

A crash half-way through writing must never leave a truncated ``submission.csv`` that looks
valid: every writer fills a temporary file in the target's directory (same file system, so the
rename is atomic) and ``os.replace``s it over the target only once every row is written.
"""

import csv

import numpy as np

from keras_fgvc.atomic import atomic_open

PAD_LABEL = -1  # rank_classes' padding label; never written into a submission


def _text(value):
    """Plain text of an id: NumPy scalars as Python values, bytes decoded, integral floats as ints."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_hotel_id_submission(path, image_ids, ranked_hotel_ids, k: int = 5):
    """Kaggle Hotel-ID ``submission.csv``: ``image_id,hotel_id`` with up to k space-separated ids.

    Padding labels (``-1`` from ``rank_classes`` when fewer than k hotels exist) are dropped.

    Args:
        path: output file.
        image_ids: test image file names (e.g. "abc.jpg"), iterable.
        ranked_hotel_ids: per image, hotel ids best first ([N, >=k] array or list of lists).
        k: ids per row (Kaggle scores MAP@5).

    Example:
        >>> write_hotel_id_submission("submission.csv", ["a.jpg"], [[3, 1, 4, 15, 9]])
    """
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "hotel_id"])
        for image_id, ranked in zip(image_ids, ranked_hotel_ids, strict=True):
            hotels = [_text(h) for h in list(ranked)[:k] if _text(h) != str(PAD_LABEL)]
            writer.writerow([_text(image_id), " ".join(hotels)])


def write_fivek_predictions(path, fnames, labels, id_column: str = "fname", label_column: str = "5k"):
    """Zalo 5K predictions CSV: one row per test image with its predicted 0/1 label.

    Args:
        path: output file.
        fnames: image file names (the ``fname`` column of ``train_meta.csv``).
        labels: predicted labels (ints; floats that are whole numbers are written as ints).
        id_column, label_column: header names, configurable to match a competition template.

    Example:
        >>> write_fivek_predictions("predictions.csv", ["1.jpg", "2.jpg"], [1, 0])
    """
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([id_column, label_column])
        for fname, label in zip(fnames, labels, strict=True):
            writer.writerow([_text(fname), _text(label)])


def write_predictions_csv(path, ids, probabilities, class_names=None, id_column: str = "id", precision: int = 6,
                          decisions=None):
    """Generic predictions: id, predicted class, its probability, then one column per class.

    Args:
        path: output file.
        ids: one id per row.
        probabilities: [N, C] class probabilities.
        class_names: C names for the header and the ``label`` column (default "0".."C-1").
        id_column: header of the id column.
        precision: decimals of the probabilities.
        decisions: the predicted class index per row when it is not the argmax (a binary decision
            threshold chosen on validation); default the argmax.

    Example:
        >>> write_predictions_csv("preds.csv", ["a", "b"], [[0.9, 0.1], [0.2, 0.8]], ["cat", "dog"])
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be [N, C], got shape {probabilities.shape}")
    names = [str(i) for i in range(probabilities.shape[1])] if class_names is None else [str(c) for c in class_names]
    if len(names) != probabilities.shape[1]:
        raise ValueError(f"{len(names)} class names for {probabilities.shape[1]} classes")
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([id_column, "label", "score", *[f"p_{n}" for n in names]])
        chosen = probabilities.argmax(axis=1) if decisions is None else np.asarray(decisions, int)
        for row_id, row, best in zip(ids, probabilities, chosen, strict=True):
            cells = [f"{p:.{precision}f}" for p in row]
            writer.writerow([_text(row_id), names[best], cells[best], *cells])
