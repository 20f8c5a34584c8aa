import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.evaluation import PAD_LABEL, extract_embeddings, load_embeddings, map_at_k, rank_classes


def brute_force_rank(query, gallery, labels, k):
    """Independent reference: full similarity matrix, per-class max by a Python dict, sorted by
    (-score, label). Padding: label -1, score -inf."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    similarity = q.astype(np.float64) @ g.astype(np.float64).T
    out_labels, out_scores = [], []
    for row in similarity:
        best = {}
        for label, value in zip(labels.tolist(), row.tolist()):
            best[label] = max(best.get(label, -np.inf), value)
        items = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
        items += [(PAD_LABEL, -np.inf)] * (k - len(items))
        out_labels.append([label for label, _ in items])
        out_scores.append([score for _, score in items])
    return np.array(out_labels), np.array(out_scores)


@pytest.mark.parametrize("max_dense_bytes", [0, 1 << 30], ids=["running_topk", "dense_table"])
@pytest.mark.parametrize(
    "gallery_size, num_classes, k, chunk_size, query_chunk",
    [
        (103, 17, 5, 10, 4),  # chunks that do not divide the gallery or the queries
        (64, 40, 10, 64, 16),  # one chunk
        (50, 3, 5, 7, 5),  # fewer classes than k: padding
        (90, 30, 1, 1, 3),  # one row per chunk
    ],
)
def test_rank_classes_equals_brute_force(gallery_size, num_classes, k, chunk_size, query_chunk, max_dense_bytes):
    rng = np.random.default_rng(gallery_size + k)
    query = rng.normal(size=(11, 6)).astype("float32")
    gallery = rng.normal(size=(gallery_size, 6)).astype("float32")
    labels = rng.integers(100, 100 + num_classes, gallery_size)
    got_labels, got_scores = rank_classes(
        query, gallery, labels, k=k, chunk_size=chunk_size, query_chunk=query_chunk, max_dense_bytes=max_dense_bytes
    )
    want_labels, want_scores = brute_force_rank(query, gallery, labels, k)
    np.testing.assert_array_equal(got_labels, want_labels)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)
    assert got_scores.dtype == np.float32


@pytest.mark.parametrize("max_dense_bytes", [0, 1 << 30])
def test_rank_classes_ties_break_towards_smaller_label(max_dense_bytes):
    # unit vectors with dyadic entries: every similarity is exact, so ties are exact ties
    e = np.eye(4, dtype=np.float32)
    gallery = np.stack([e[1], e[0], e[0], e[2], e[0], e[3]])
    labels = np.array([7, 9, 3, 5, 4, 1])  # classes 9, 3 and 4 all hold e[0]
    query = np.stack([e[0], np.full(4, 0.5, np.float32)])  # second query is equally similar to all
    got, scores = rank_classes(query, gallery, labels, k=4, chunk_size=2, max_dense_bytes=max_dense_bytes)
    np.testing.assert_array_equal(got[0], [3, 4, 9, 1])  # three tied at 1.0, then 0-score classes by label
    np.testing.assert_array_equal(scores[0], [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(got[1], [1, 3, 4, 5])
    np.testing.assert_array_equal(scores[1], [0.5] * 4)


def test_rank_classes_string_labels_and_memmap_gallery(tmp_path):
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(37, 5)).astype("float32")
    path = tmp_path / "gallery.npy"
    np.save(path, gallery)
    mapped = np.load(path, mmap_mode="r")
    labels = np.array([f"hotel_{i % 9}" for i in range(37)])
    query = rng.normal(size=(6, 5)).astype("float32")
    got_labels, got_scores = rank_classes(query, mapped, labels, k=3, chunk_size=8)
    want_labels, want_scores = brute_force_rank(query, gallery, labels, 3)
    np.testing.assert_array_equal(got_labels, want_labels)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)


def test_padded_ranking_scores_with_map_at_k():
    gallery = np.eye(3, dtype=np.float32)
    labels, _ = rank_classes(gallery, gallery, np.array([0, 1, 2]), k=5)
    assert (labels[:, 3:] == PAD_LABEL).all()
    assert map_at_k([0, 1, 2], labels, k=5) == 1.0


def _tiny_embedder():
    inputs = keras.Input((4, 4, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, {"embedding": keras.layers.Dense(5)(pooled), "logits": keras.layers.Dense(2)(pooled)})


@pytest.mark.parametrize("use_strategy", [False, True])
def test_extract_embeddings_streams_to_npy_with_ids(tmp_path, use_strategy):
    model = _tiny_embedder()
    images = np.random.default_rng(2).uniform(size=(7, 4, 4, 3)).astype("float32")
    ids = np.array([f"img{i}.jpg" for i in range(7)])
    dataset = tf.data.Dataset.from_tensor_slices((images, {"id": ids})).batch(3)  # last batch is partial
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if use_strategy else None
    embeddings, got_ids = extract_embeddings(model, dataset, tmp_path / "gallery", strategy=strategy, progress=False)
    expected = keras.ops.convert_to_numpy(model(images)["embedding"])
    assert isinstance(embeddings, np.memmap)
    np.testing.assert_allclose(np.asarray(embeddings), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_ids, ids)
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == ["embeddings.npy", "ids.npy"]
    reloaded, reloaded_ids = load_embeddings(tmp_path / "gallery", mmap=False)
    np.testing.assert_array_equal(reloaded, np.asarray(embeddings))


def test_extract_embeddings_without_ids_numbers_rows(tmp_path):
    images = np.arange(2 * 5 * 3, dtype="float32").reshape(5, 2, 3)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    embeddings, ids = extract_embeddings(lambda x: tf.reduce_sum(x, axis=1), dataset, tmp_path, progress=False)
    np.testing.assert_array_equal(np.asarray(embeddings), images.sum(axis=1))
    np.testing.assert_array_equal(ids, np.arange(5))


TWO_REPLICA_SCRIPT = """
import sys, tempfile
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_fgvc.evaluation import extract_embeddings
inputs = keras.Input((4, 4, 3))
model = keras.Model(inputs, {"embedding": keras.layers.Dense(5)(keras.layers.Flatten()(inputs))})
x = np.random.default_rng(0).uniform(size=(7, 4, 4, 3)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(7) * 10)).batch(3)  # batches 3, 3, 1
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
emb, ids = extract_embeddings(model, dataset, tempfile.mkdtemp(), strategy=strategy, progress=False)
np.testing.assert_allclose(np.asarray(emb), model(x)["embedding"].numpy(), rtol=1e-5, atol=1e-6)
np.testing.assert_array_equal(ids, np.arange(7) * 10)
print("OK")
"""


def test_extract_embeddings_two_replicas_keeps_row_order():
    # logical devices must be set before TensorFlow starts, hence a fresh interpreter
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", TWO_REPLICA_SCRIPT], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-2000:]
