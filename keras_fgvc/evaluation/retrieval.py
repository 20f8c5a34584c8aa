"""Retrieval: embed a data set to disk once, then rank classes by cosine similarity in chunks.

Hotel-ID ranks each test image against every train+val embedding and submits the five most
similar *unique* hotels (SYSTEMS.md section 1). At that scale (44,703 x 4,096 gallery, 5,000
queries) the full similarity matrix is 894 MB, and a 1,000,000-image gallery does not fit at
all, so ``rank_classes`` never builds it: it streams the gallery in row chunks (a memory-mapped
``.npy`` is read once, front to back), reduces each chunk to one max similarity per class, and
merges that into a running top-k of classes per query.
"""

import os

import numpy as np

from keras_fgvc.tracking.progress import interactive

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "ids.npy"
PAD_LABEL = -1  # rank_classes pads with this label (and score -inf) when the gallery has < k classes
_NO_CLASS = np.iinfo(np.int64).max  # internal class index of an empty slot: sorts after every real class


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """``x / max(||x||, epsilon)`` in float32; zero rows stay zero (similarity 0 to everything)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return x / np.maximum(norms, epsilon)


def _inverse_norms(x, epsilon=1e-12):
    """1 / max(||row||, epsilon) in float32, without materialising ``x ** 2``."""
    squares = np.einsum("ij,ij->i", x, x, dtype=np.float32)
    return (1.0 / np.maximum(np.sqrt(squares), epsilon)).astype(np.float32)


def _top_k_sorted(scores, classes, k):
    """Per row, the k best (score desc, class index asc) of ``scores`` [Q, n] with column classes [n].

    Columns must be in ascending class order. Ties at the k-th value are resolved towards the
    smaller class index so results never depend on argpartition's arbitrary order.
    """
    q, n = scores.shape
    if n <= k:
        order = np.argsort(-scores, axis=1, kind="stable")
        out_scores = np.take_along_axis(scores, order, axis=1)
        out_classes = classes[order]
        pad = k - n
        if pad:
            out_scores = np.concatenate([out_scores, np.full((q, pad), -np.inf, np.float32)], axis=1)
            out_classes = np.concatenate([out_classes, np.full((q, pad), _NO_CLASS)], axis=1)
        return out_scores, out_classes
    kth = np.partition(scores, n - k, axis=1)[:, n - k : n - k + 1]
    keep = scores >= kth
    crowded = np.flatnonzero(keep.sum(axis=1) > k)  # rows whose k-th value is tied past the boundary
    if crowded.size:
        sub = scores[crowded]
        tied = sub == kth[crowded]
        room = k - (sub > kth[crowded]).sum(axis=1, keepdims=True)
        keep[crowded] = (sub > kth[crowded]) | (tied & (np.cumsum(tied, axis=1) <= room))
    cols = np.nonzero(keep)[1].reshape(q, k)  # row-major: each row's columns in ascending order
    picked = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    return np.take_along_axis(scores, cols, axis=1), classes[cols]


def _merge_unique(scores_a, classes_a, scores_b, classes_b, k):
    """Top-k unique classes of two candidate lists; a repeated class keeps its best score.

    Exact: a class in the true top-k over A and B is in the top-k of the side holding its max.
    """
    scores = np.concatenate([scores_a, scores_b], axis=1)
    classes = np.concatenate([classes_a, classes_b], axis=1)
    order = np.lexsort((classes, -scores), axis=-1)
    scores = np.take_along_axis(scores, order, axis=1)
    classes = np.take_along_axis(classes, order, axis=1)
    same = classes[:, :, None] == classes[:, None, :]
    repeated = np.tril(same, k=-1).any(axis=2)  # an earlier (better) column holds the same class
    scores[repeated] = -np.inf  # with fewer than k unique classes, repeats become padding slots
    classes[repeated] = _NO_CLASS
    keep = np.argsort(repeated, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, keep, axis=1), np.take_along_axis(classes, keep, axis=1)


def _class_levels(chunk_classes):
    """Row plan for a per-class max over one gallery chunk, computed once per chunk.

    Returns (run_classes [runs], levels): level j lists (runs longer than j, the chunk row holding
    each such run's j-th member). The max is then built level by level (first row of every class,
    then every second row, ...): contiguous-row gathers and elementwise maxima, ~7x faster than
    ``np.maximum.reduceat`` when most classes have one or two rows in a chunk, and the gallery
    rows themselves are never reordered or copied.
    """
    order = np.argsort(chunk_classes, kind="stable")
    sorted_classes = chunk_classes[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_classes[1:] != sorted_classes[:-1]])
    run_lengths = np.diff(np.r_[run_starts, len(sorted_classes)])
    levels = [(None, order[run_starts])]
    for offset in range(1, int(run_lengths.max())):
        longer = np.flatnonzero(run_lengths > offset)
        levels.append((longer, order[run_starts[longer] + offset]))
    return sorted_classes[run_starts], levels


def _class_max(similarity, levels):
    """Max similarity per class: ``similarity`` [n, q] -> [runs, q] following ``_class_levels``."""
    best = similarity[levels[0][1]]
    for longer, rows in levels[1:]:
        best[longer] = np.maximum(best[longer], similarity[rows])
    return best


def _rank_chunked(
    query, gallery_rows, num_gallery, class_index, num_classes, k, chunk_size, query_chunk, max_dense_bytes, progress
):
    """Shared engine: ``query`` [Q, D], ``gallery_rows(start, stop)`` -> (rows [n, D], row scale [n] or None).

    A row scale (1 / norm) multiplies the similarities instead of normalising a copy of the
    rows. Query norms need no work here: they scale a query's scores uniformly, so the caller
    divides the final scores by them.

    Per gallery chunk (read once) and query block, similarities are reduced to a max per class.
    Those maxima go either into a dense [C, Q] table (when it fits ``max_dense_bytes``: one
    top-k at the end) or into a running top-k of classes merged after every block (any size).
    """
    num_query = query.shape[0]
    dense = num_classes * num_query * 4 <= max_dense_bytes
    if dense:
        table = np.full((num_classes, num_query), -np.inf, np.float32)
    else:
        best_scores = np.full((num_query, k), -np.inf, np.float32)
        best_classes = np.full((num_query, k), _NO_CLASS, np.int64)
    starts = range(0, num_gallery, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="rank", unit="chunk")
    for start in starts:
        stop = min(start + chunk_size, num_gallery)
        run_classes, levels = _class_levels(class_index[start:stop])
        rows, row_scale = gallery_rows(start, stop)
        for q0 in range(0, num_query, query_chunk):
            q1 = min(q0 + query_chunk, num_query)
            similarity = rows @ query[q0:q1].T  # [n, q]
            if row_scale is not None:
                similarity *= row_scale[:, None]
            class_max = _class_max(similarity, levels)  # [runs, q]
            if dense:
                table[run_classes, q0:q1] = np.maximum(table[run_classes, q0:q1], class_max)
            else:
                chunk_scores, chunk_top = _top_k_sorted(np.ascontiguousarray(class_max.T), run_classes, k)
                best_scores[q0:q1], best_classes[q0:q1] = _merge_unique(
                    best_scores[q0:q1], best_classes[q0:q1], chunk_scores, chunk_top, k
                )
    if dense:
        best_scores = np.empty((num_query, k), np.float32)
        best_classes = np.empty((num_query, k), np.int64)
        all_classes = np.arange(num_classes, dtype=np.int64)
        for q0 in range(0, num_query, query_chunk):  # blocks keep the transposed copy small
            q1 = min(q0 + query_chunk, num_query)
            scores = np.ascontiguousarray(table[:, q0:q1].T)
            best_scores[q0:q1], best_classes[q0:q1] = _top_k_sorted(scores, all_classes, k)
        # classes never seen score -inf; they only surface as padding when C < k
        best_classes[~np.isfinite(best_scores)] = _NO_CLASS
    return best_scores, best_classes


def _encode_labels(gallery_labels):
    classes, class_index = np.unique(np.asarray(gallery_labels), return_inverse=True)
    return classes, class_index.astype(np.int64).reshape(-1)


def _decode(best_scores, best_classes, classes):
    """Class indices -> labels; padding slots (score -inf) get ``PAD_LABEL``."""
    padded = ~np.isfinite(best_scores)
    safe = np.where(padded, 0, best_classes)
    labels = classes[safe]
    if padded.any():
        labels = labels.astype(np.result_type(labels.dtype, np.asarray(PAD_LABEL).dtype))
        labels[padded] = PAD_LABEL
    return labels, best_scores


def rank_classes(
    query,
    gallery,
    gallery_labels,
    k: int = 5,
    chunk_size: int = 4096,
    query_chunk: int = 1024,
    normalize: bool = True,
    max_dense_bytes: int = 256 << 20,
    progress: bool | None = None,
):
    """Top-k unique gallery classes per query by cosine similarity, in bounded memory.

    A class scores the highest similarity of any of its gallery rows. Memory beyond the inputs
    is about ``chunk_size * D + query_chunk * chunk_size`` floats (plus a normalised copy of the
    queries), whatever the gallery size; a memory-mapped gallery is read once, front to back.

    Ties are deterministic: equal scores are ordered by class label (ascending, as
    ``np.unique`` sorts them). When the gallery has fewer than ``k`` classes, the missing slots
    hold label ``PAD_LABEL`` (-1) and score ``-inf``, which ``map_at_k`` never counts as a hit.

    Args:
        query: query embeddings [Q, D].
        gallery: gallery embeddings [G, D] (an array or ``np.load(..., mmap_mode="r")``).
        gallery_labels: class label of each gallery row [G] (ints or strings).
        k: number of unique classes to return per query.
        chunk_size: gallery rows per chunk (bounds memory; need not divide G).
        query_chunk: queries per similarity block.
        normalize: L2-normalise both sides (set False when they already are).
        max_dense_bytes: keep a dense [classes, Q] float32 table of class maxima when it fits in
            this many bytes (Hotel-ID: 3,116 x 5,000 = 62 MB); otherwise merge a running top-k
            after every block. Both give identical results; dense is faster.
        progress: show a tqdm bar over gallery chunks (None: only in a terminal, ``tracking.progress``).

    Returns:
        (labels [Q, k], scores [Q, k] float32), best first.

    Example:
        >>> labels, scores = rank_classes(test_emb, train_emb, train_hotel_ids, k=5)
    """
    gallery_labels = np.asarray(gallery_labels).reshape(-1)
    if gallery.shape[0] != gallery_labels.shape[0]:
        raise ValueError(f"gallery has {gallery.shape[0]} rows but {gallery_labels.shape[0]} labels")
    if np.shape(query)[-1] != gallery.shape[1]:
        raise ValueError(f"query dim {np.shape(query)[-1]} != gallery dim {gallery.shape[1]}")
    classes, class_index = _encode_labels(gallery_labels)
    query = np.asarray(query, dtype=np.float32)

    def gallery_rows(start, stop):
        rows = np.asarray(gallery[start:stop], dtype=np.float32)  # a view when already float32
        return rows, (_inverse_norms(rows) if normalize else None)

    best_scores, best_classes = _rank_chunked(
        query,
        gallery_rows,
        gallery.shape[0],
        class_index,
        len(classes),
        k,
        chunk_size,
        query_chunk,
        max_dense_bytes,
        interactive() if progress is None else progress,
    )
    if normalize:
        best_scores *= _inverse_norms(query)[:, None]
    return _decode(best_scores, best_classes, classes)


def extract_embeddings(
    model_or_fn,
    dataset,
    out_dir,
    output_key: str = "embedding",
    strategy=None,
    id_key: str = "id",
    progress: bool | None = None,
):
    """Embed a ``tf.data`` data set once and write ``embeddings.npy`` + ``ids.npy`` to ``out_dir``.

    Batches are streamed to disk, so the gallery never has to fit in memory: rows are appended
    to a raw file while the data set runs (its length is often unknown up front), then moved
    into ``embeddings.npy`` through ``np.lib.format.open_memmap`` block by block.

    Elements may be ``images``, ``(images, ids)``, or ``(images, targets_dict)`` with the ids
    under ``targets_dict[id_key]``; without ids the running row number is used.
    Under a ``tf.distribute`` strategy (single host: Mirrored, OneDevice, TPU) each batch is
    split across replicas and the per-replica outputs are concatenated back in order.

    Args:
        model_or_fn: a Keras model (called with ``training=False``) or a callable on a batch.
        dataset: a batched ``tf.data.Dataset``.
        out_dir: directory for the two files (created if missing).
        output_key: output to keep when the model returns a dict.
        strategy: optional ``tf.distribute.Strategy`` (the one training used).
        id_key: key of the ids when the second element is a dict.
        progress: show a progress bar (None: only in a terminal, ``tracking.progress``).

    Returns:
        (embeddings memmap [N, D] opened read-only, ids [N]).

    Example:
        >>> emb, ids = extract_embeddings(model, test_ds, "runs/hotel/gallery")
    """
    import keras
    import tensorflow as tf

    os.makedirs(out_dir, exist_ok=True)

    def embed(images):
        out = model_or_fn(images, training=False) if isinstance(model_or_fn, keras.Model) else model_or_fn(images)
        if isinstance(out, dict):
            out = out[output_key]
        return out

    if strategy is not None:
        run_step = tf.function(lambda images: strategy.run(embed, args=(images,)))

        def step(images):
            # split on the host so ids stay aligned: replica r embeds the r-th contiguous slice
            shards = strategy.experimental_distribute_values_from_function(lambda ctx: _replica_slice(images, ctx))
            replicas = strategy.experimental_local_results(run_step(shards))
            return np.concatenate([np.asarray(r) for r in replicas], axis=0)

    else:
        from keras_fgvc.compiled import compiled

        compiled_embed = compiled(embed, model_or_fn) if isinstance(model_or_fn, keras.Model) else embed

        def step(images):
            return keras.ops.convert_to_numpy(compiled_embed(images))

    def split(element):
        if isinstance(element, (tuple, list)):
            images, second = element[0], element[1] if len(element) > 1 else None
            if isinstance(second, dict):
                second = second.get(id_key)
            return images, second
        return element, None

    raw_path = os.path.join(out_dir, EMBEDDINGS_FILE + ".partial")
    ids, rows, width, dtype = [], 0, None, None
    show = interactive() if progress is None else progress
    bar = keras.utils.Progbar(None, unit_name="batch") if show else None
    try:
        with open(raw_path, "wb") as raw:
            for batch_index, element in enumerate(dataset):
                images, batch_ids = split(element)
                values = np.asarray(step(images))
                values = values.reshape(values.shape[0], -1)
                width, dtype = values.shape[1], values.dtype
                raw.write(np.ascontiguousarray(values).tobytes())
                if batch_ids is None:
                    ids.extend(range(rows, rows + values.shape[0]))
                else:
                    batch_ids = np.asarray(batch_ids).reshape(-1)
                    ids.extend(x.decode() if isinstance(x, bytes) else x for x in batch_ids.tolist())
                rows += values.shape[0]
                if bar is not None:
                    bar.update(batch_index + 1)
        if width is None:
            raise ValueError("the data set yielded no batches")
        source = np.memmap(raw_path, dtype=dtype, mode="r", shape=(rows, width))
        target = np.lib.format.open_memmap(
            os.path.join(out_dir, EMBEDDINGS_FILE), mode="w+", dtype=dtype, shape=(rows, width)
        )
        block = max(1, (64 << 20) // max(1, width * dtype.itemsize))  # copy 64 MB at a time
        for start in range(0, rows, block):
            target[start : start + block] = source[start : start + block]
        target.flush()
        del source, target
    finally:
        if os.path.exists(raw_path):
            os.remove(raw_path)
    np.save(os.path.join(out_dir, IDS_FILE), np.asarray(ids))
    return load_embeddings(out_dir)


def _replica_slice(images, ctx):
    """The contiguous share of a global batch that replica ``ctx.replica_id_in_sync_group`` embeds."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    replicas = ctx.num_replicas_in_sync
    per_replica = (n + replicas - 1) // replicas
    start = tf.minimum(ctx.replica_id_in_sync_group * per_replica, n)
    return images[start : tf.minimum(start + per_replica, n)]


def load_embeddings(out_dir, mmap: bool = True):
    """(embeddings [N, D], ids [N]) written by ``extract_embeddings``; memory-mapped by default."""
    embeddings = np.load(os.path.join(out_dir, EMBEDDINGS_FILE), mmap_mode="r" if mmap else None)
    ids = np.load(os.path.join(out_dir, IDS_FILE))
    return embeddings, ids
