"""Landmark-retrieval re-ranking: alpha query expansion (αQE) and database-side augmentation (DBA).

Both replace a vector by the normalised, similarity-weighted sum of itself and its nearest
gallery rows. αQE: Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human
Annotation", TPAMI 2018, the section on αQE (the query itself is their i = 0 term, weight
1^alpha). DBA: Arandjelović & Zisserman, "Three things everyone should know to improve object
retrieval", CVPR 2012, here with the αQE weighting of Radenović et al.:

    v' = normalize(v + sum_{i=1..n} max(s_i, 0)^alpha * g_i),   s_i = cos(v, g_i),

over the n gallery rows g_i most similar to v (for DBA: the n nearest *other* rows). αQE runs
on the queries, DBA once on the gallery; used together, expanded queries are ranked against the
augmented gallery.

Galleries can be memory-mapped (44,703 x 4,096 at Hotel-ID scale, 1,000,000 rows and more), so
the Q x G or G x G similarity matrix is never built: like ``rank_classes`` the gallery is
streamed in row chunks and only a running top-n of (similarity, row index) per vector is kept.
A second pass gathers each vector's n neighbour rows and writes the result block by block.
"""

import os
import tempfile

import numpy as np

from keras_fgvc.evaluation.retrieval import (
    _NO_CLASS,
    _inverse_norms,
    _top_k_sorted,
    l2_normalize,
)


def _nearest_rows(query_rows, num_query, gallery, n, chunk_size, query_chunk, exclude_self):
    """The n most cosine-similar gallery rows of every query, streaming the gallery once.

    ``query_rows(start, stop)`` returns raw (unnormalised) float32 query rows: a query's norm
    scales all its similarities alike, so it cannot change the order and is applied later by
    the caller. Keeping the query raw also keeps ties exact: duplicate gallery rows give
    bit-identical similarities, so "lower index first" is what decides between them.

    Returns (scores [Q, n] = <q, g> / ||g|| float32, indices [Q, n] int64, gallery inverse norms [G]).
    """
    num_gallery = gallery.shape[0]
    best_scores = np.full((num_query, n), -np.inf, np.float32)
    best_index = np.full((num_query, n), _NO_CLASS, np.int64)
    inverse_norms = np.empty(num_gallery, np.float32)
    for start in range(0, num_gallery, chunk_size):
        stop = min(start + chunk_size, num_gallery)
        rows = np.asarray(gallery[start:stop], dtype=np.float32)  # read once: a view when float32
        inverse_norms[start:stop] = _inverse_norms(rows)
        row_index = np.arange(start, stop, dtype=np.int64)
        for q0 in range(0, num_query, query_chunk):
            q1 = min(q0 + query_chunk, num_query)
            similarity = query_rows(q0, q1) @ rows.T  # [q, n]
            similarity *= inverse_norms[start:stop]
            if exclude_self:
                # query i is gallery row i: knock out exactly the diagonal of the overlap, so a
                # duplicate of row i (a different index) stays a candidate
                lo, hi = max(q0, start), min(q1, stop)
                if lo < hi:
                    own = np.arange(lo, hi)
                    similarity[own - q0, own - start] = -np.inf
            # _top_k_sorted breaks ties towards the smaller column, i.e. the lower gallery index
            chunk_scores, chunk_index = _top_k_sorted(similarity, row_index, n)
            scores = np.concatenate([best_scores[q0:q1], chunk_scores], axis=1)
            index = np.concatenate([best_index[q0:q1], chunk_index], axis=1)
            # indices are distinct, so sorting by (-score, index) is an exact, deterministic merge
            order = np.lexsort((index, -scores), axis=-1)[:, :n]
            best_scores[q0:q1] = np.take_along_axis(scores, order, axis=1)
            best_index[q0:q1] = np.take_along_axis(index, order, axis=1)
    return best_scores, best_index, inverse_norms


def _expand_block(query_block, query_inverse_norms, scores, index, gallery, gallery_inverse_norms, alpha):
    """``normalize(q + sum_i max(s_i, 0)^alpha g_i)`` for one block of queries (all normalised)."""
    similarity = scores * query_inverse_norms[:, None]  # now the cosine s_i
    weights = np.power(np.maximum(similarity, 0.0), np.float32(alpha)).astype(np.float32)
    expanded = query_block * query_inverse_norms[:, None]
    for i in range(index.shape[1]):  # one neighbour rank at a time: [q, D] gathered, never [q, n, D]
        neighbours = np.asarray(gallery[index[:, i]], dtype=np.float32)
        expanded += (weights[:, i] * gallery_inverse_norms[index[:, i]])[:, None] * neighbours
    return l2_normalize(expanded)


def _check(gallery, n, chunk_size, query_chunk):
    if np.ndim(gallery) != 2:
        raise ValueError(f"gallery must be [G, D], got shape {np.shape(gallery)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if chunk_size < 1 or query_chunk < 1:
        raise ValueError(f"chunk_size and query_chunk must be >= 1, got {chunk_size} and {query_chunk}")


def alpha_query_expansion(
    query, gallery, n: int = 2, alpha: float = 3.0, chunk_size: int = 4096, query_chunk: int = 1024
):
    """αQE: each query becomes ``normalize(q + sum_i max(s_i, 0)^alpha g_i)`` over its n nearest gallery rows.

    Radenović et al. (TPAMI 2018) use alpha = 3; alpha = 0 is plain average query
    expansion (Chum et al. 2007). Both sides are L2-normalised internally. The gallery is
    streamed in chunks (read once), so it may be a memory map; memory beyond the inputs is about
    ``chunk_size * D + query_chunk * (chunk_size + D)`` floats plus the [Q, D] result.
    Ties between equally similar gallery rows go to the lower row index.

    Args:
        query: query embeddings [Q, D].
        gallery: gallery embeddings [G, D] (an array or ``np.load(..., mmap_mode="r")``); usually
            the output of ``database_side_augmentation``.
        n: gallery neighbours added to each query (clipped to G); 0 returns the normalised queries.
        alpha: exponent of the similarity weights; negative similarities weigh 0.
        chunk_size: gallery rows per chunk (need not divide G).
        query_chunk: queries per similarity block.

    Returns:
        expanded queries [Q, D] float32, L2-normalised.

    Example:
        >>> gallery_dba = database_side_augmentation(train_emb, n=2)
        >>> labels, _ = rank_classes(alpha_query_expansion(test_emb, gallery_dba, n=2), gallery_dba, hotel_ids)
    """
    _check(gallery, n, chunk_size, query_chunk)
    query = np.asarray(query, dtype=np.float32)
    if query.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query shape {query.shape} does not match gallery dim {gallery.shape[1]}")
    n = min(n, gallery.shape[0])
    if n == 0:
        return l2_normalize(query)
    scores, index, gallery_inverse_norms = _nearest_rows(
        lambda q0, q1: query[q0:q1], query.shape[0], gallery, n, chunk_size, query_chunk, exclude_self=False
    )
    out = np.empty(query.shape, np.float32)
    for q0 in range(0, query.shape[0], query_chunk):
        q1 = min(q0 + query_chunk, query.shape[0])
        block = query[q0:q1]
        out[q0:q1] = _expand_block(
            block, _inverse_norms(block), scores[q0:q1], index[q0:q1], gallery, gallery_inverse_norms, alpha
        )
    return out


def database_side_augmentation(
    gallery, n: int = 2, alpha: float = 3.0, chunk_size: int = 4096, query_chunk: int = 1024, out=None
):
    """DBA: each gallery row becomes ``normalize(g + sum_i max(s_i, 0)^alpha g_i)`` over its n nearest other rows.

    A row never counts as its own neighbour, but an exact duplicate (another index) does. The
    neighbours come from the original gallery, not from rows already augmented. The gallery is
    streamed in row chunks and never compared as a whole G x G matrix: memory beyond the gallery
    is about ``chunk_size * D + query_chunk * (chunk_size + D)`` floats plus 12 bytes per row and
    neighbour; with ``out`` the result goes to disk too. Compute is G x G x D, like any exact DBA.
    Ties between equally similar rows go to the lower row index.

    Args:
        gallery: gallery embeddings [G, D] (an array or ``np.load(..., mmap_mode="r")``).
        n: neighbours added to each row (clipped to G - 1); 0 returns the normalised gallery.
        alpha: exponent of the similarity weights (Radenović et al. 2018: 3); negative
            similarities weigh 0.
        chunk_size: gallery rows per chunk (need not divide G).
        query_chunk: gallery rows augmented per similarity block.
        out: optional path of a ``.npy`` file to write the result to (atomically: a temporary
            file in the same folder, then ``os.replace``); it is returned memory-mapped read-only.

    Returns:
        augmented gallery [G, D] float32, L2-normalised (an array, or a memory map when ``out`` is set).

    Example:
        >>> gallery_dba = database_side_augmentation(np.load("gallery/embeddings.npy", mmap_mode="r"),
        ...                                          n=2, out="gallery/embeddings_dba.npy")
    """
    _check(gallery, n, chunk_size, query_chunk)
    num_gallery = gallery.shape[0]
    n = min(n, max(num_gallery - 1, 0))

    def gallery_rows(start, stop):
        return np.asarray(gallery[start:stop], dtype=np.float32)

    if n:
        scores, index, inverse_norms = _nearest_rows(
            gallery_rows, num_gallery, gallery, n, chunk_size, query_chunk, exclude_self=True
        )
    if out is None:
        result = np.empty(gallery.shape, np.float32)
        target, temp_path = result, None
    else:
        out = os.fspath(out)
        handle, temp_path = tempfile.mkstemp(suffix=".npy.partial", dir=os.path.dirname(os.path.abspath(out)))
        os.close(handle)
        target = np.lib.format.open_memmap(temp_path, mode="w+", dtype=np.float32, shape=gallery.shape)
    try:
        for q0 in range(0, num_gallery, query_chunk):
            q1 = min(q0 + query_chunk, num_gallery)
            rows = gallery_rows(q0, q1)
            if n:
                target[q0:q1] = _expand_block(
                    rows, inverse_norms[q0:q1], scores[q0:q1], index[q0:q1], gallery, inverse_norms, alpha
                )
            else:
                target[q0:q1] = l2_normalize(rows)
        if temp_path is None:
            return result
        target.flush()
        del target
        # the old file (possibly the input gallery itself) stays valid for maps already open on it
        os.replace(temp_path, out)
    except BaseException:
        if temp_path is not None and os.path.exists(temp_path):
            os.remove(temp_path)
        raise
    return np.load(out, mmap_mode="r")
