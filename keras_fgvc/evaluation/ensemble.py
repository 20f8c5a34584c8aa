"""Ensembles: weighted sums of cosine similarities (Hotel-ID) and averaged probabilities (VIPriors).

Hotel-ID's ensemble sums each model's query-gallery cosine-similarity matrix with equal weights
(SYSTEMS.md section 1). Building one Q x G matrix per model is what we avoid: for unit vectors,

    sum_m w_m <q_m, g_m>  =  < concat_m(w_m * q_m), concat_m(g_m) >,

so ranking the concatenation of weight-scaled normalised query embeddings against the
concatenated normalised gallery embeddings, in gallery chunks, gives exactly the weighted sum.
"""

import numpy as np

from keras_fgvc.evaluation.retrieval import _decode, _encode_labels, _rank_chunked, l2_normalize


def _weights(weights, count):
    weights = np.ones(count, np.float32) if weights is None else np.asarray(weights, np.float32).reshape(-1)
    if weights.shape[0] != count:
        raise ValueError(f"{count} models but {weights.shape[0]} weights")
    return weights


def weighted_concat(embeddings, weights=None, normalize=True):
    """``concat_m(w_m * normalize(e_m))`` along features: inner products become weighted cosine sums.

    Args:
        embeddings: list of [N, D_m] arrays, one per model (same rows).
        weights: one weight per model (default 1 each); pass ``None`` for the gallery side.
        normalize: L2-normalise each model's rows first.

    Example:
        >>> q = weighted_concat([q_model_a, q_model_b], weights=[0.5, 0.5])
    """
    weights = _weights(weights, len(embeddings))
    parts = [(l2_normalize(e) if normalize else np.asarray(e, np.float32)) * w for e, w in zip(embeddings, weights)]
    return np.concatenate(parts, axis=1)


def ensemble_rank_classes(
    queries,
    galleries,
    gallery_labels,
    weights=None,
    k: int = 5,
    chunk_size: int = 4096,
    query_chunk: int = 1024,
    max_dense_bytes: int = 256 << 20,
    progress: bool = False,
):
    """Top-k unique classes by the weighted sum of each model's cosine similarity.

    Only one gallery chunk of every model is concatenated at a time, so memory stays bounded
    (memory-mapped galleries work). Scores are the weighted sums themselves.

    Args:
        queries: list of [Q, D_m] query embeddings, one per model.
        galleries: list of [G, D_m] gallery embeddings (same row order for every model).
        gallery_labels: [G] class labels.
        weights: one weight per model (Hotel-ID used equal weights: the default).
        k, chunk_size, query_chunk, max_dense_bytes, progress: as in ``rank_classes``.

    Returns:
        (labels [Q, k], scores [Q, k]).

    Example:
        >>> labels, scores = ensemble_rank_classes([qa, qb], [ga, gb], hotel_ids, k=5)
    """
    if len(queries) != len(galleries):
        raise ValueError(f"{len(queries)} query sets but {len(galleries)} galleries")
    num_gallery = galleries[0].shape[0]
    if any(g.shape[0] != num_gallery for g in galleries):
        raise ValueError("every gallery must have the same rows")
    classes, class_index = _encode_labels(gallery_labels)
    if class_index.shape[0] != num_gallery:
        raise ValueError(f"galleries have {num_gallery} rows but {class_index.shape[0]} labels")
    query = weighted_concat(queries, weights)

    def gallery_rows(start, stop):
        return weighted_concat([np.asarray(g[start:stop], np.float32) for g in galleries]), None

    best_scores, best_classes = _rank_chunked(
        query,
        gallery_rows,
        num_gallery,
        class_index,
        len(classes),
        k,
        chunk_size,
        query_chunk,
        max_dense_bytes,
        progress,
    )
    return _decode(best_scores, best_classes, classes)


def average_probabilities(probabilities, weights=None):
    """Weighted mean of per-model probability arrays (VIPriors averaged 7 models' softmax outputs).

    Args:
        probabilities: list of [N, C] arrays.
        weights: one weight per model (default equal); normalised to sum to 1.

    Example:
        >>> ensemble = average_probabilities([p_resnest, p_tresnet], weights=[2, 1])
    """
    weights = _weights(weights, len(probabilities))
    stacked = np.stack([np.asarray(p, np.float32) for p in probabilities])
    return np.tensordot(weights / weights.sum(), stacked, axes=1)
