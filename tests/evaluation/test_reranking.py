import os

import numpy as np
import pytest

from keras_fgvc.evaluation import alpha_query_expansion, database_side_augmentation


def dense_expand(query, gallery, n, alpha, exclude_self):
    """Independent reference: the full similarity matrix in float64, neighbours by a lexsort on
    (-similarity, index) so ties go to the lower index, then normalize(q + sum w_i g_i)."""
    q = np.asarray(query, np.float64)
    g = np.asarray(gallery, np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    similarity = q @ g.T
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    out = q.copy()
    for row, scores in enumerate(similarity):
        nearest = np.lexsort((np.arange(len(scores)), -scores))[:n]
        weights = np.maximum(scores[nearest], 0.0) ** alpha
        out[row] += weights @ g[nearest]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "n, alpha, chunk_size, query_chunk",
    [
        (2, 3.0, 7, 5),  # chunks that divide neither the gallery (53 rows) nor the queries (19)
        (1, 3.0, 53, 19),  # one chunk each
        (5, 1.0, 1, 3),  # one gallery row per chunk: the running top-n does all the work
        (3, 0.0, 16, 64),  # alpha = 0: plain average query expansion
        (60, 3.0, 10, 4),  # n > G: every gallery row is a neighbour
    ],
)
def test_alpha_query_expansion_equals_dense_reference(n, alpha, chunk_size, query_chunk):
    rng = np.random.default_rng(n + chunk_size)
    query = rng.normal(size=(19, 8)).astype("float32")
    gallery = rng.normal(size=(53, 8)).astype("float32") * rng.uniform(0.5, 3.0, (53, 1)).astype("float32")
    got = alpha_query_expansion(query, gallery, n=n, alpha=alpha, chunk_size=chunk_size, query_chunk=query_chunk)
    assert got.dtype == np.float32 and got.shape == query.shape
    np.testing.assert_allclose(got, dense_expand(query, gallery, min(n, 53), alpha, exclude_self=False), atol=1e-5)


@pytest.mark.parametrize(
    "n, alpha, chunk_size, query_chunk",
    [
        (2, 3.0, 7, 5),
        (1, 3.0, 53, 53),  # the query block and the gallery chunk are the same rows
        (4, 1.0, 1, 2),
        (2, 3.0, 10, 13),  # query blocks straddle gallery chunk boundaries
        (80, 3.0, 16, 8),  # n >= G - 1: every other row is a neighbour
    ],
)
def test_database_side_augmentation_equals_dense_reference(n, alpha, chunk_size, query_chunk):
    rng = np.random.default_rng(n + chunk_size)
    gallery = rng.normal(size=(53, 8)).astype("float32") * rng.uniform(0.5, 3.0, (53, 1)).astype("float32")
    got = database_side_augmentation(gallery, n=n, alpha=alpha, chunk_size=chunk_size, query_chunk=query_chunk)
    assert got.dtype == np.float32 and got.shape == gallery.shape
    np.testing.assert_allclose(got, dense_expand(gallery, gallery, min(n, 52), alpha, exclude_self=True), atol=1e-5)


def test_n_zero_returns_normalised_inputs():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(4, 6)).astype("float32") * 5
    gallery = rng.normal(size=(9, 6)).astype("float32") * 5
    want_query = query / np.linalg.norm(query, axis=1, keepdims=True)
    want_gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, n=0), want_query, atol=1e-6)
    np.testing.assert_allclose(database_side_augmentation(gallery, n=0, chunk_size=4), want_gallery, atol=1e-6)
    # a one-row gallery has no other row to add
    np.testing.assert_allclose(database_side_augmentation(gallery[:1], n=2), want_gallery[:1], atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 2, 6])
def test_duplicates_exclude_only_the_row_itself_and_ties_go_to_the_lower_index(chunk_size):
    # integer rows of equal norm (5): every similarity is an exact multiple of 1/25, so ties are exact
    a, b, c = [3, 4, 0], [0, 3, 4], [4, 0, 3]
    gallery = np.array([a, b, a, c, a, b], np.float32)
    _, index, _ = _neighbours(gallery, n=3, chunk_size=chunk_size)
    # row 0's copies of a are rows 2 and 4 (similarity 1), then b and c tie at 12/25 -> b (row 1)
    np.testing.assert_array_equal(index[0], [2, 4, 1])
    np.testing.assert_array_equal(index[2], [0, 4, 1])
    np.testing.assert_array_equal(index[1], [5, 0, 2])  # b's copy, then the a rows (12/25) before c (12/25, row 3)
    np.testing.assert_array_equal(index[5], [1, 0, 2])
    got = database_side_augmentation(gallery, n=3, alpha=3.0, chunk_size=chunk_size, query_chunk=4)
    np.testing.assert_allclose(got, dense_expand(gallery, gallery, 3, 3.0, exclude_self=True), atol=1e-6)
    # with n=1 each copy of a adds one other copy: the sum is 2a, the direction unchanged
    once = database_side_augmentation(gallery, n=1, chunk_size=chunk_size)
    np.testing.assert_allclose(once[0], np.array(a) / 5, atol=1e-6)


def _neighbours(gallery, n, chunk_size):
    from keras_fgvc.evaluation.reranking import _nearest_rows

    return _nearest_rows(lambda q0, q1: gallery[q0:q1], len(gallery), gallery, n, chunk_size, 4, exclude_self=True)


def test_memmap_gallery_and_atomic_out_file(tmp_path):
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(41, 8)).astype("float32")
    np.save(tmp_path / "gallery.npy", gallery)
    mapped = np.load(tmp_path / "gallery.npy", mmap_mode="r")
    query = rng.normal(size=(5, 8)).astype("float32")
    want_dba = database_side_augmentation(gallery, n=2, chunk_size=6)

    got = database_side_augmentation(mapped, n=2, chunk_size=6, query_chunk=7, out=tmp_path / "dba.npy")
    assert isinstance(got, np.memmap) and got.mode == "r"
    np.testing.assert_allclose(got, want_dba, atol=1e-6)  # other block shapes: BLAS may round differently
    assert sorted(os.listdir(tmp_path)) == ["dba.npy", "gallery.npy"]  # no temporary file left behind
    np.testing.assert_allclose(
        alpha_query_expansion(query, got, chunk_size=6), alpha_query_expansion(query, want_dba), atol=1e-6
    )

    # overwriting the input file in place is safe: the old map keeps reading the replaced inode
    again = database_side_augmentation(mapped, n=2, chunk_size=6, out=tmp_path / "gallery.npy")
    np.testing.assert_allclose(again, want_dba, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["dba.npy", "gallery.npy"]


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="n must be"):
        database_side_augmentation(np.ones((3, 2), np.float32), n=-1, out=tmp_path / "dba.npy")
    with pytest.raises(ValueError, match="query shape"):
        alpha_query_expansion(np.ones((3, 4), np.float32), np.ones((5, 2), np.float32))

    class Exploding:  # a gallery whose second read fails, after the output file was opened
        shape, ndim, reads = (4, 2), 2, 0

        def __getitem__(self, key):
            Exploding.reads += 1
            if Exploding.reads > 2:
                raise OSError("disk gone")
            return np.eye(4, 2, dtype=np.float32)[key]

    with pytest.raises(OSError, match="disk gone"):
        database_side_augmentation(Exploding(), n=1, chunk_size=4, query_chunk=4, out=tmp_path / "dba.npy")
    assert os.listdir(tmp_path) == []


def average_precision(ranking, relevant):
    hits = np.isin(ranking, relevant)
    return float(np.mean(np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)))


def test_dba_and_alpha_query_expansion_fix_a_constructed_ranking():
    # Landmark A seen from two views: a1 close to the query, a2 only reachable through a1
    # (cos(a1, a2) = 0.8). Distractor B: b1 fairly close to the query, whose own nearest
    # neighbour b2 points away from it. All rows are unit vectors; q = e1.
    q = np.array([[1.0, 0.0, 0.0]], np.float32)
    b1, a2, a1, b2 = [0.6, 0.0, 0.8], [0.28, 0.96, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]
    gallery = np.array([b1, a2, a1, b2], np.float32)  # rows 0..3
    relevant = [1, 2]

    # Plain cosine: a1 0.8, b1 0.6, a2 0.28, b2 0 -> rows [2, 0, 1, 3], AP (1 + 2/3) / 2 = 0.833.
    plain = np.argsort(-(q @ gallery.T)[0], kind="stable")
    np.testing.assert_array_equal(plain, [2, 0, 1, 3])
    assert average_precision(plain, relevant) == pytest.approx(5 / 6)

    # αQE alone (n=1, alpha=3): q' ~ q + 0.8^3 a1 = (1.4096, 0.3072, 0); a2 scores 0.6896 and b1
    # 0.8458 (unnormalised), so b1 still outranks a2: the query alone cannot reach a2.
    expanded = alpha_query_expansion(q, gallery, n=1, alpha=3.0, chunk_size=3)
    np.testing.assert_allclose(expanded[0] * np.linalg.norm([1.4096, 0.3072]), [1.4096, 0.3072, 0], atol=1e-5)
    np.testing.assert_array_equal(np.argsort(-(expanded @ gallery.T)[0], kind="stable"), [2, 0, 1, 3])

    # DBA (n=1, alpha=3): a1 <-> a2 and b1 <-> b2 are mutual nearest neighbours (0.8 each, beating
    # cos(a1, b1) = 0.48), so every row adds 0.512 x its partner; every norm is
    # sqrt(1 + 2 * 0.512 * 0.8 + 0.512^2) = 1.44269. First coordinates (= cosine to q):
    # a1' (0.8 + 0.512 * 0.28) / 1.44269 = 0.6539, a2' (0.28 + 0.512 * 0.8) / 1.44269 = 0.4780,
    # b1' 0.6 / 1.44269 = 0.4159, b2' 0.512 * 0.6 / 1.44269 = 0.2129: b1 drops below a2.
    augmented = database_side_augmentation(gallery, n=1, alpha=3.0, chunk_size=3, query_chunk=2)
    np.testing.assert_allclose(augmented[:, 0], [0.4159, 0.4780, 0.6539, 0.2129], atol=1e-4)
    np.testing.assert_allclose(augmented[2], [0.65389, 0.75659, 0.0], atol=1e-4)

    # DBA + αQE: q' ~ q + 0.6539^3 a1' = (1.18283, 0.21154, 0); scores a1' 0.9335, a2' 0.7512,
    # b1' 0.4919, b2' 0.2519 -> rows [2, 1, 0, 3], both views of A first: AP 1.
    expanded = alpha_query_expansion(q, augmented, n=1, alpha=3.0, chunk_size=3)
    scores = (expanded @ augmented.T)[0] * np.linalg.norm([1.18283, 0.21154])
    np.testing.assert_allclose(scores, [0.4919, 0.7512, 0.9335, 0.2519], atol=1e-4)
    reranked = np.argsort(-scores, kind="stable")
    np.testing.assert_array_equal(reranked, [2, 1, 0, 3])
    assert average_precision(reranked, relevant) == 1.0
