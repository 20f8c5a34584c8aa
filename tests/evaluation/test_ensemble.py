import numpy as np
import pytest

from keras_fgvc.evaluation import average_probabilities, ensemble_rank_classes, rank_classes, weighted_concat


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_weighted_concat_inner_product_is_weighted_cosine_sum():
    rng = np.random.default_rng(0)
    qa, qb = rng.normal(size=(4, 3)), rng.normal(size=(4, 6))
    ga, gb = rng.normal(size=(9, 3)), rng.normal(size=(9, 6))
    weights = [0.7, 1.9]
    identity = weighted_concat([qa, qb], weights) @ weighted_concat([ga, gb]).T
    direct = weights[0] * _unit(qa) @ _unit(ga).T + weights[1] * _unit(qb) @ _unit(gb).T
    np.testing.assert_allclose(identity, direct, atol=1e-5)


@pytest.mark.parametrize("max_dense_bytes", [0, 1 << 30])
def test_ensemble_rank_equals_ranking_the_summed_similarity_matrix(max_dense_bytes):
    rng = np.random.default_rng(1)
    queries = [rng.normal(size=(7, 4)).astype("float32"), rng.normal(size=(7, 8)).astype("float32")]
    galleries = [rng.normal(size=(41, 4)).astype("float32"), rng.normal(size=(41, 8)).astype("float32")]
    labels = rng.integers(0, 12, 41)
    weights = [1.0, 0.5]
    got_labels, got_scores = ensemble_rank_classes(
        queries, galleries, labels, weights, k=5, chunk_size=6, query_chunk=3, max_dense_bytes=max_dense_bytes
    )
    summed = sum(w * _unit(q) @ _unit(g).T for w, q, g in zip(weights, queries, galleries))  # [Q, G]
    for row, (got_l, got_s) in enumerate(zip(got_labels, got_scores)):
        per_class = {c: summed[row, labels == c].max() for c in np.unique(labels)}
        want = sorted(per_class.items(), key=lambda item: (-item[1], item[0]))[:5]
        np.testing.assert_array_equal(got_l, [c for c, _ in want])
        np.testing.assert_allclose(got_s, [s for _, s in want], atol=1e-5)


def test_single_model_ensemble_equals_rank_classes():
    rng = np.random.default_rng(2)
    q, g, labels = rng.normal(size=(5, 6)), rng.normal(size=(30, 6)), rng.integers(0, 8, 30)
    a = ensemble_rank_classes([q], [g], labels, k=3)
    b = rank_classes(q, g, labels, k=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_average_probabilities_weighted_mean():
    p1 = np.array([[0.2, 0.8], [0.5, 0.5]])
    p2 = np.array([[0.6, 0.4], [0.1, 0.9]])
    np.testing.assert_allclose(average_probabilities([p1, p2]), [[0.4, 0.6], [0.3, 0.7]], atol=1e-7)
    np.testing.assert_allclose(average_probabilities([p1, p2], weights=[3, 1]), [[0.3, 0.7], [0.4, 0.6]], atol=1e-7)
    with pytest.raises(ValueError, match="weights"):
        average_probabilities([p1, p2], weights=[1.0])
