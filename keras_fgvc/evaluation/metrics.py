"""Classification and ranking metrics: NumPy functions for evaluation, Keras metrics for ``fit``.

The NumPy functions are the reference: ``f1_score`` matches ``sklearn.metrics.f1_score``
(zero division gives 0.0), ``map_at_k`` follows the Kaggle Hotel-ID 2022 definition. The Keras
metrics accumulate state over an epoch so their epoch value equals the NumPy function on the
whole epoch (not a mean of per-batch values, which is wrong for F1).
"""

import keras
import numpy as np

F1_AVERAGES = ("binary", "macro")


def _labels(y):
    """Integer/string labels as a flat array; [B, 1] column vectors are accepted."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"labels must have shape [N] or [N, 1], got {y.shape}")
    return y


def accuracy(y_true, y_pred) -> float:
    """Fraction of predictions equal to the labels.

    Args:
        y_true: labels, shape [N] or [N, 1].
        y_pred: predicted labels, same shape.

    Example:
        >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
        0.75
    """
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    return float(np.mean(y_true == y_pred)) if y_true.size else 0.0


def top_k_accuracy(y_true, scores, k: int = 5) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores.

    A row counts as a hit when fewer than ``k`` classes score strictly higher than the true
    class, so classes tied at the boundary all count as inside the top k (the rule of
    ``tf.math.in_top_k``); tie-free scores give exactly sklearn's ``top_k_accuracy_score``.

    Args:
        y_true: integer class indices, shape [N] or [N, 1].
        scores: probabilities or logits, shape [N, C].
        k: how many top classes count.

    Example:
        >>> top_k_accuracy([2, 0], [[0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], k=2)
        0.5
    """
    y_true = _labels(y_true).astype(np.int64)
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != y_true.shape[0]:
        raise ValueError(f"scores must be [N, C] with N={y_true.shape[0]}, got {scores.shape}")
    true_scores = scores[np.arange(len(y_true)), y_true]
    higher = np.sum(scores > true_scores[:, None], axis=1)
    return float(np.mean(higher < k)) if len(y_true) else 0.0


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts ``cm[t, p]`` of rows with label ``t`` predicted as ``p`` (sklearn's orientation).

    Args:
        y_true: integer labels in [0, num_classes), shape [N] or [N, 1].
        y_pred: integer predictions in [0, num_classes).
        num_classes: size of the square matrix.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], num_classes=2).tolist()
        [[1, 0], [1, 1]]
    """
    y_true, y_pred = _labels(y_true).astype(np.int64), _labels(y_pred).astype(np.int64)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def most_confused(cm, k: int = 10) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal cells of a confusion matrix: ``(true, predicted, count)``,
    largest count first (ties: lower true, then lower predicted class first); cells of 0 are left out.

    Example:
        >>> most_confused([[5, 2, 0], [3, 4, 0], [0, 1, 6]], k=2)
        [(1, 0, 3), (0, 1, 2)]
    """
    cm = np.asarray(cm)
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    true, predicted = np.nonzero(off)
    counts = off[true, predicted]
    order = np.lexsort((predicted, true, -counts))[:k]
    return [(int(true[i]), int(predicted[i]), int(counts[i])) for i in order]


def per_class_accuracy(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Accuracy within each true class (its recall); NaN for a class with no rows.

    Args:
        y_true: integer labels, shape [N].
        y_pred: integer predictions, shape [N].
        num_classes: number of classes C; the result has shape [C].

    Example:
        >>> per_class_accuracy([0, 0, 1], [0, 1, 1], num_classes=3).tolist()
        [0.5, 1.0, nan]
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def f1_from_confusion(cm, average: str = "macro", pos_label: int = 1) -> float:
    """F1 from a confusion matrix, with sklearn's conventions.

    ``macro`` averages over the classes present in labels or predictions (sklearn's default
    ``labels``); a class whose precision and recall are both undefined scores 0.0 (sklearn's
    ``zero_division`` result). ``binary`` is the F1 of class ``pos_label``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denominator > 0, 2 * tp / denominator, 0.0)
    if average == "binary":
        return float(per_class[pos_label])
    if average == "macro":
        present = denominator > 0
        return float(per_class[present].mean()) if present.any() else 0.0
    raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}")


def f1_score(y_true, y_pred, average: str = "binary", pos_label=1) -> float:
    """F1 score equal to ``sklearn.metrics.f1_score`` (``zero_division`` gives 0.0).

    Args:
        y_true: labels (ints or strings), shape [N] or [N, 1].
        y_pred: predicted labels, same shape.
        average: "binary" (F1 of ``pos_label``; at most two distinct labels) or "macro"
            (unweighted mean over the labels present in ``y_true`` or ``y_pred``).
        pos_label: the positive label for ``average="binary"``.

    Example:
        >>> round(f1_score([0, 1, 1, 0], [0, 1, 0, 0]), 4)
        0.6667
    """
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    if average not in F1_AVERAGES:
        raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}")
    present = np.unique(np.concatenate([y_true, y_pred]))
    if average == "binary":
        if len(present) > 2:
            raise ValueError(f"average='binary' needs at most two labels, got {present.tolist()}")
        if len(present) == 2 and pos_label not in present:
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels {present.tolist()}")
        if pos_label not in present:
            return 0.0  # one label, and it is the negative one: no true positive is possible
    index = {label: i for i, label in enumerate(present.tolist())}
    t = np.array([index[v] for v in y_true.tolist()], dtype=np.int64)
    p = np.array([index[v] for v in y_pred.tolist()], dtype=np.int64)
    cm = confusion_matrix(t, p, len(present))
    return f1_from_confusion(cm, average, index.get(pos_label, 0))


def best_f1_threshold(y_true, positive_scores) -> tuple[float, float]:
    """The threshold on a binary score that maximises F1 of ``score >= threshold``, and that F1.

    Candidates are the distinct scores; the threshold returned lies halfway between the chosen
    score and the next lower one, so it makes the same decisions on these rows while keeping a
    margin for new ones. Ties keep the higher threshold (fewer positives). Without positive rows
    every F1 is 0 and the plain 0.5 comes back.

    Example:
        >>> best_f1_threshold([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.9])  # 0.15: halfway between 0.2 and 0.1
        (0.15000000000000002, 0.8)
    """
    y = _labels(y_true).astype(bool)
    scores = np.asarray(positive_scores, np.float64).reshape(-1)
    if len(y) != len(scores):
        raise ValueError(f"{len(y)} labels for {len(scores)} scores")
    if not y.any():
        return 0.5, 0.0
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], y[order]
    tp = np.cumsum(hits)
    # F1 of predicting the top i+1 rows positive; only the last row of a run of equal scores is a cut.
    f1 = 2 * tp / (np.arange(1, len(ranked) + 1) + y.sum())
    cut = np.r_[ranked[1:] != ranked[:-1], True]
    candidates = np.flatnonzero(cut)
    best = candidates[np.argmax(f1[candidates])]
    below = ranked[best + 1] if best + 1 < len(ranked) else ranked[best] - 1e-6
    return float((ranked[best] + below) / 2), float(f1[best])


def map_at_k(y_true, ranked, k: int = 5) -> float:
    """Mean average precision at k as Kaggle defines it with one correct label per image.

    Kaggle (Hotel-ID 2022, Happy Whale): MAP@k = 1/U sum_u sum_{i<=min(n,k)} P(i) rel(i), where
    once the correct label has been scored, later repeats of it are skipped. With a single
    correct label the per-image denominator is 1 and the score is 1 / (rank of its first
    occurrence), or 0 when it is not in the first k predictions. Repeats of a wrong label still
    take a position. Rows may hold fewer than k predictions (a ragged list of lists).

    Args:
        y_true: one label per image, shape [N] (ints or strings).
        ranked: predictions per image, best first: an array [N, >=1] or a list of sequences.
            Padding values (e.g. -1 from ``rank_classes``) must not equal a real label.
        k: cut-off.

    Example:
        >>> map_at_k([1, 2, 3], [[1, 5, 6], [5, 2, 2], [5, 5, 6]], k=5)
        0.5
    """
    y_true = _labels(y_true)
    if len(ranked) != len(y_true):
        raise ValueError(f"{len(y_true)} labels but {len(ranked)} rankings")
    if len(y_true) == 0:
        return 0.0
    if isinstance(ranked, np.ndarray) and ranked.ndim == 2:
        hits = ranked[:, :k] == y_true[:, None]
        first = np.argmax(hits, axis=1)
        return float(np.mean(np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)))
    total = 0.0
    for label, row in zip(y_true.tolist(), ranked):
        row = list(row)[:k]
        if label in row:
            total += 1.0 / (row.index(label) + 1)
    return total / len(y_true)


@keras.saving.register_keras_serializable(package="keras_fgvc")
class SparseF1Score(keras.metrics.Metric):
    """F1 over an epoch from integer labels and class scores, equal to sklearn's epoch F1.

    The state is a [C, C] confusion matrix, so the result is exact for the whole epoch (F1 is
    not a mean of per-batch values). ``macro`` skips classes absent from both labels and
    predictions so far, as sklearn does.

    Args:
        num_classes: number of classes C (2 for binary tasks).
        average: "macro" or "binary".
        pos_label: positive class index for ``average="binary"``.
        name: metric name shown in logs.
        **kwargs: forwarded to ``keras.metrics.Metric`` (e.g. ``dtype``).

    Example:
        >>> model.compile("sgd", "sparse_categorical_crossentropy",
        ...               metrics=[SparseF1Score(num_classes=2, average="binary")])
    """

    def __init__(self, num_classes, average="macro", pos_label=1, name="f1", **kwargs):
        super().__init__(name=name, **kwargs)
        if average not in F1_AVERAGES:
            raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}")
        if average == "binary" and not 0 <= pos_label < num_classes:
            raise ValueError(f"pos_label={pos_label} outside [0, {num_classes})")
        self.num_classes = int(num_classes)
        self.average = average
        self.pos_label = int(pos_label)
        # float32 counts are exact up to 2**24 per cell and work on every device (no int64 on TPU).
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        predicted = ops.reshape(predicted, (-1,))
        weights = ops.ones_like(y_true, dtype="float32")
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        # one-hot(true)^T @ one-hot(predicted): shapes known when traced (a bincount's length is not,
        # under jax.jit), and the same sums on every backend.
        rows = ops.one_hot(y_true, self.num_classes, dtype="float32") * weights[:, None]
        counts = ops.matmul(ops.transpose(rows), ops.one_hot(predicted, self.num_classes, dtype="float32"))
        self.confusion.assign_add(counts)

    def result(self):
        ops = keras.ops
        cm = self.confusion
        tp = ops.diagonal(cm)
        fp = ops.sum(cm, axis=0) - tp
        fn = ops.sum(cm, axis=1) - tp
        denominator = 2.0 * tp + fp + fn
        per_class = ops.where(denominator > 0, 2.0 * tp / ops.maximum(denominator, 1e-12), 0.0)
        if self.average == "binary":
            return per_class[self.pos_label]
        present = ops.cast(denominator > 0, "float32")
        return ops.sum(per_class * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.confusion.assign(keras.ops.zeros(self.confusion.shape, dtype=self.confusion.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "average": self.average,
            "pos_label": self.pos_label,
        }


@keras.saving.register_keras_serializable(package="keras_fgvc")
class MeanAveragePrecisionAtK(keras.metrics.Mean):
    """Kaggle MAP@k of the top-k classes of the logits, averaged over the epoch.

    Classes from ``top_k`` of one score row are distinct, so no duplicate handling is needed;
    each row scores 1 / (rank of the true class) or 0, as in ``map_at_k``.

    Args:
        k: cut-off (5 for Hotel-ID).
        name: metric name shown in logs.
        **kwargs: forwarded to ``keras.metrics.Mean`` (e.g. ``dtype``).

    Example:
        >>> model.compile("sgd", "sparse_categorical_crossentropy", metrics=[MeanAveragePrecisionAtK(5)])
    """

    def __init__(self, k=5, name="map_at_k", **kwargs):
        super().__init__(name=name, **kwargs)
        self.k = int(k)

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1, 1))
        k = min(self.k, y_pred.shape[-1]) if y_pred.shape[-1] is not None else self.k
        _, top = ops.top_k(ops.cast(y_pred, "float32"), k=k)
        hits = ops.cast(ops.equal(ops.cast(top, "int32"), y_true), "float32")
        reciprocal_rank = 1.0 / ops.arange(1, k + 1, dtype="float32")
        per_row = ops.sum(hits * reciprocal_rank, axis=-1)
        return super().update_state(per_row, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "k": self.k}
