import keras
import numpy as np
import pytest
import sklearn.metrics as skm

from keras_fgvc.evaluation import (
    MeanAveragePrecisionAtK,
    SparseF1Score,
    accuracy,
    confusion_matrix,
    f1_score,
    map_at_k,
    per_class_accuracy,
    top_k_accuracy,
)


# --- MAP@k: hand-worked cases from the Kaggle definition (one correct label, a label counts once)


@pytest.mark.parametrize(
    "label, ranking, expected",
    [
        ("A", ["A", "B", "C", "D", "E"], 1.0),
        ("A", ["A", "A", "A", "A", "A"], 1.0),  # Kaggle's own example: repeats of the hit earn nothing more
        ("A", ["A", "B", "A", "C", "A"], 1.0),  # Kaggle's own example
        ("A", ["B", "A", "C", "D", "E"], 1 / 2),
        ("A", ["B", "B", "A", "C", "D"], 1 / 3),  # a repeated wrong label still takes a position
        ("A", ["B", "C", "D", "E", "A"], 1 / 5),
        ("A", ["B", "C", "D", "E", "F", "A"], 0.0),  # beyond k
        ("A", ["B", "A"], 1 / 2),  # fewer than k predictions
        ("A", [], 0.0),
    ],
)
def test_map_at_k_single_image_hand_worked(label, ranking, expected):
    assert map_at_k([label], [ranking], k=5) == pytest.approx(expected)


def test_map_at_k_mean_over_images_and_array_path_agrees():
    labels = np.array([3, 7, 1, 4])
    ranked = np.array([[3, 1, 2], [1, 7, 7], [2, 2, 1], [0, 5, 6]])
    expected = (1 + 1 / 2 + 1 / 3 + 0) / 4
    assert map_at_k(labels, ranked, k=5) == pytest.approx(expected)
    assert map_at_k(labels, ranked.tolist(), k=5) == pytest.approx(expected)
    assert map_at_k(labels, ranked, k=2) == pytest.approx((1 + 1 / 2) / 4)


# --- F1, accuracy, confusion against scikit-learn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_macro_matches_sklearn_with_missing_classes(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, 40)
    y_pred = rng.integers(0, 7, 40)  # class 6 only predicted; some classes may be absent
    assert f1_score(y_true, y_pred, average="macro") == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0.0)
    )


@pytest.mark.parametrize(
    "y_true, y_pred, pos_label",
    [
        ([0, 1, 1, 0, 1], [0, 1, 0, 0, 1], 1),
        ([0, 1, 1, 0, 1], [0, 1, 0, 0, 1], 0),
        ([0, 0, 0], [0, 0, 0], 1),  # no positive anywhere: sklearn's zero division -> 0.0
        ([1, 1, 0], [0, 0, 0], 1),  # no predicted positive -> 0.0
        (["no", "yes", "yes"], ["yes", "yes", "no"], "yes"),
    ],
)
def test_f1_binary_matches_sklearn(y_true, y_pred, pos_label):
    expected = skm.f1_score(y_true, y_pred, average="binary", pos_label=pos_label, zero_division=0.0)
    assert f1_score(y_true, y_pred, average="binary", pos_label=pos_label) == pytest.approx(expected)


def test_f1_binary_rejects_multiclass():
    with pytest.raises(ValueError, match="two labels"):
        f1_score([0, 1, 2], [0, 1, 2], average="binary")


def test_accuracy_confusion_per_class_match_sklearn():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    cm = confusion_matrix(y_true[:, None], y_pred, num_classes=5)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(5)))
    per_class = per_class_accuracy(y_true, y_pred, num_classes=5)
    np.testing.assert_allclose(per_class[:4], skm.recall_score(y_true, y_pred, average=None, labels=range(4)))
    assert np.isnan(per_class[4])


def test_top_k_accuracy_matches_sklearn_and_counts_boundary_ties_in():
    rng = np.random.default_rng(4)
    scores = rng.random((30, 6))
    y_true = rng.integers(0, 6, 30)
    for k in (1, 2, 5):
        assert top_k_accuracy(y_true, scores, k) == pytest.approx(
            skm.top_k_accuracy_score(y_true, scores, k=k, labels=range(6))
        )
    # true class 2 ties with class 1 for second place: inside the top 2 (tf.math.in_top_k rule)
    assert top_k_accuracy([2], [[0.9, 0.05, 0.05]], k=2) == 1.0
    assert top_k_accuracy([2], [[0.9, 0.06, 0.04]], k=2) == 0.0
    assert top_k_accuracy([2], [[0.5, 0.3, 0.2]], k=1) == 0.0


# --- Keras metrics: the epoch value equals the NumPy reference over the whole epoch


@pytest.mark.parametrize("average, num_classes", [("macro", 5), ("binary", 2)])
def test_sparse_f1_accumulates_to_sklearn_epoch_value(average, num_classes):
    rng = np.random.default_rng(5)
    metric = SparseF1Score(num_classes=num_classes, average=average)
    all_true, all_pred = [], []
    for batch in range(3):
        y_true = rng.integers(0, num_classes - (batch == 0), (4, 1))  # [B, 1] labels
        logits = rng.normal(size=(4, num_classes)).astype("float32")
        metric.update_state(y_true, logits)
        all_true.append(y_true[:, 0])
        all_pred.append(logits.argmax(-1))
    y_true, y_pred = np.concatenate(all_true), np.concatenate(all_pred)
    expected = skm.f1_score(y_true, y_pred, average=average, zero_division=0.0)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_sparse_f1_config_roundtrip_and_compiles_in_fit():
    metric = SparseF1Score(num_classes=3, average="macro", name="f1_macro")
    clone = SparseF1Score.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    x = np.random.default_rng(6).normal(size=(8, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=[clone])
    logs = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    predicted = model.predict(x, verbose=0).argmax(-1)
    assert logs["f1_macro"] == pytest.approx(skm.f1_score(y, predicted, average="macro", zero_division=0.0), abs=1e-6)


def test_map_at_k_metric_equals_numpy_reference():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(10, 8)).astype("float32")
    y_true = rng.integers(0, 8, 10)
    metric = MeanAveragePrecisionAtK(k=5)
    metric.update_state(y_true[:6], logits[:6])
    metric.update_state(y_true[6:], logits[6:])
    ranked = np.argsort(-logits, axis=1)[:, :5]
    assert float(metric.result()) == pytest.approx(map_at_k(y_true, ranked, k=5), abs=1e-6)
    clone = MeanAveragePrecisionAtK.from_config(metric.get_config())
    assert clone.k == 5 and clone.name == "map_at_k"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_f1_threshold_is_the_best_cut_by_scikit_learn(seed):
    from sklearn.metrics import f1_score as sk_f1

    from keras_fgvc.evaluation.metrics import best_f1_threshold

    rng = np.random.default_rng(seed)
    y = (rng.random(200) < 0.1).astype(int)  # 10% positives
    scores = np.round(np.clip(0.25 * y + rng.normal(0.3, 0.2, 200), 0, 1), 2)  # rounded: ties
    threshold, f1 = best_f1_threshold(y, scores)
    brute = max(sk_f1(y, (scores >= s).astype(int), zero_division=0) for s in np.unique(scores))
    assert f1 == pytest.approx(brute, abs=1e-12)
    assert sk_f1(y, (scores >= threshold).astype(int)) == pytest.approx(f1, abs=1e-12)
    assert f1 > sk_f1(y, (scores >= 0.5).astype(int), zero_division=0)  # the argmax cut is worse here
    assert best_f1_threshold(np.zeros(5), rng.random(5)) == (0.5, 0.0)


def test_most_confused_equals_a_sort_of_every_off_diagonal_cell():
    from keras_fgvc.evaluation.metrics import most_confused

    rng = np.random.default_rng(3)
    cm = rng.integers(0, 5, (7, 7))
    cells = sorted(((int(cm[t, p]), t, p) for t in range(7) for p in range(7) if t != p and cm[t, p]),
                   key=lambda c: (-c[0], c[1], c[2]))
    assert most_confused(cm, k=6) == [(t, p, n) for n, t, p in cells[:6]]
    assert most_confused(np.eye(3, dtype=int) * 4, k=5) == []
