"""A deployable retrieval SavedModel: image bytes in, the k most similar gallery classes out.

Hotel-ID 2022 identifies a hotel by nearest neighbours, not by a classifier head, so the served
artefact has to carry the gallery. ``export_retrieval_model`` writes the embedding model, the
gallery embeddings and their labels into one SavedModel whose ``serving_default`` ranks classes
exactly like ``evaluation.retrieval.rank_classes`` (a class scores its best gallery row; ties go
to the smaller label; missing slots are label -1, score -inf), optionally with flip TTA and
alpha query expansion, so a client needs nothing but the folder.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.evaluation.retrieval import PAD_LABEL, l2_normalize
from keras_fgvc.export.archive import add_tf_endpoint, model_archive
from keras_fgvc.export.saved_model import (
    check_writable,
    encoded_batch_pixels,
    write_archive,
)

# Ranking settings and gallery shape of an export, next to saved_model.pb.
RETRIEVAL_FILE = "retrieval.json"
_COPY_BYTES = 64 << 20  # a memory-mapped gallery is normalised and copied in blocks of this size
# How the gallery can be stored; a float16 gallery is widened to float32 block by block
# (_COPY_BYTES of float32 at a time) before each matmul, so scores are float32 sums either way.
GALLERY_DTYPES = ("float32", "float16")


def export_retrieval_model(model: keras.Model, path: str, image_size: int, gallery, gallery_labels, class_ids,
                           k: int = 5, channels: int = 3, resize: str = "squash", flip_tta: bool = False,
                           query_expansion: int = 0, query_expansion_alpha: float = 3.0,
                           overwrite: bool = False, gallery_dtype: str = "float32") -> str:
    """Write ``model`` plus its gallery as a class-ranking SavedModel at ``path`` (temp dir + rename).

    Signatures (``image_bytes``: tf.string [B] of encoded JPEG/PNG, decoded as in training):
    ``serving_default`` -> ``class_id`` [B, k] string (``str(class_ids[label])``, "" when padded),
    ``label`` [B, k] int32, ``score`` [B, k] float32 cosine similarity, best first;
    ``embed`` -> ``embedding`` [B, D] float32, the L2-normalised query (after flip TTA, before
    query expansion). Labels, scores, ties and padding follow ``rank_classes``.

    The gallery ships as a ``gallery_dtype`` variable (``variables/``), so the export is the
    network plus ``G * D * 4`` bytes in float32 or ``G * D * 2`` in float16: Hotel-ID's
    44,703 x 4,096 gallery makes ~733 MB or ~366 MB. A float16 gallery is widened to float32 one block of rows at a
    time for the matmul, so scores are float32 sums of float16-rounded rows: each cosine moves by
    up to ~1e-3, and only classes whose scores are that close can swap. Exporting holds two
    copies of the gallery in memory for a moment; serving builds a [B, G] similarity block per
    request. Gallery rows are re-normalised on the way in (like ``rank_classes(normalize=True)``),
    so float16 embeddings whose norms drift slightly still give cosine scores.

    Args:
        model: a model from ``build_model`` (float pixels in [0, 255] -> dict with ``embedding``).
        path: target directory, e.g. ``saved_models/hotel_id/default/retrieval``.
        image_size: side the images are resized to, as in training.
        gallery: [G, D] gallery embeddings (an array or a memory-mapped ``.npy``).
        gallery_labels: [G] class index (0..K-1) of each gallery row.
        class_ids: the K original class ids (hotel ids) in index order.
        k: unique classes returned per image (Hotel-ID scores MAP@5).
        channels: 3 (RGB) or 1 (greyscale).
        resize: the resize policy used in training (``data.decode.RESIZE_POLICIES``).
        flip_tta: embed each image and its mirror image and use the normalised sum as the query.
        query_expansion: n > 0 adds the query's n most similar gallery rows, weighted by
            ``max(similarity, 0) ** query_expansion_alpha``, and ranks with the normalised sum
            (alpha QE, Radenovic, Tolias & Chum, TPAMI 2018); 0 turns it off.
        query_expansion_alpha: the alpha of alpha QE (the paper uses 3).
        overwrite: replace an existing export.
        gallery_dtype: ``float32`` or ``float16``, how the gallery is stored (``GALLERY_DTYPES``).

    Returns:
        ``path``.

    Example:
        >>> export_retrieval_model(model, "saved_models/hotel_id/default/retrieval", 256, gallery, labels,
        ...                        hotel_ids, flip_tta=True)  # doctest: +SKIP
        >>> tf.saved_model.load("saved_models/hotel_id/default/retrieval").signatures["serving_default"](
        ...     image_bytes=tf.constant([jpeg]))["class_id"]  # doctest: +SKIP
    """
    check_writable(path, overwrite)
    if gallery_dtype not in GALLERY_DTYPES:
        raise ValueError(f"gallery_dtype must be one of {', '.join(GALLERY_DTYPES)}, got {gallery_dtype!r}")
    dim = int(model.output["embedding"].shape[-1])
    labels, present = _check_gallery(gallery, gallery_labels, len(class_ids), dim, k, query_expansion)
    rows = tf.Variable(_normalised_copy(gallery, gallery_dtype), trainable=False, name="gallery")
    block = max(1, _COPY_BYTES // (dim * 4))
    blocks = [(start, min(start + block, rows.shape[0])) for start in range(0, rows.shape[0], block)]
    row_labels = tf.Variable(labels, trainable=False, name="gallery_labels")
    num_classes = len(class_ids)
    has_rows = tf.constant(present)
    # index num_classes is the padding slot's id, so one gather serves real and padded labels
    id_strings = tf.constant([str(c) for c in class_ids] + [""])
    spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    archive, forward = model_archive(model, image_size, channels)

    def pixels(image_bytes):
        return encoded_batch_pixels(image_bytes, image_size, channels, resize)

    def query_embedding(image_bytes):
        x = pixels(image_bytes)
        if flip_tta:
            # one forward pass over [x; mirrored x]: inference-mode layers treat rows independently
            both = tf.cast(forward(tf.concat([x, tf.reverse(x, axis=[2])], 0))["embedding"], tf.float32)
            n = tf.shape(x)[0]
            embedding = both[:n] + both[n:]
        else:
            embedding = tf.cast(forward(x)["embedding"], tf.float32)
        return tf.math.l2_normalize(embedding, axis=-1)

    def gallery_similarity(query):
        """[G, B] float32 cosine similarities: the layout segment max wants."""
        if rows.dtype == tf.float32:
            return tf.matmul(rows, query, transpose_b=True)
        # float16 rows widened one block at a time: a request holds one float32 block, not a float32 gallery
        return tf.concat([tf.matmul(tf.cast(rows[start:stop], tf.float32), query, transpose_b=True)
                          for start, stop in blocks], axis=0)

    def serve(image_bytes):
        query = query_embedding(image_bytes)
        similarity = gallery_similarity(query)
        if query_expansion:
            top = tf.math.top_k(tf.transpose(similarity), k=query_expansion)  # ties: lower row first
            weights = tf.pow(tf.maximum(top.values, 0.0), query_expansion_alpha)
            neighbours = tf.cast(tf.gather(rows, top.indices), tf.float32)  # [B, n, D]
            query = tf.math.l2_normalize(query + tf.einsum("bn,bnd->bd", weights, neighbours), axis=-1)
            similarity = gallery_similarity(query)
        class_max = tf.math.unsorted_segment_max(similarity, row_labels, num_classes)  # [K, B]
        # a class without gallery rows gets the float minimum from segment max; rank_classes never returns it
        scores = tf.where(has_rows[:, None], class_max, -np.inf)
        scores = tf.transpose(scores)
        if num_classes < k:
            scores = tf.pad(scores, [[0, 0], [0, k - num_classes]], constant_values=-np.inf)
        best = tf.math.top_k(scores, k=k)  # equal scores keep the lower class index first
        padded = tf.math.is_inf(best.values)
        label = tf.where(padded, PAD_LABEL, best.indices)
        return {
            "class_id": tf.gather(id_strings, tf.where(padded, num_classes, best.indices)),
            "label": label,
            "score": best.values,
        }

    def embed(image_bytes):
        return {"embedding": query_embedding(image_bytes)}

    add_tf_endpoint(archive, "serving_default", serve, [spec])
    add_tf_endpoint(archive, "embed", embed, [spec])
    # The endpoints read the gallery from these tf.Variables, so the archive must track them.
    # Under TensorFlow they are also the "gallery" collection (reloaded.gallery = [rows, labels])
    # a client can inspect; under JAX ExportArchive takes only JAX variables there, and would copy them.
    store = tf.Module(name="gallery_store")
    store.rows, store.labels = rows, row_labels
    archive.track(store)
    if keras.backend.backend() == "tensorflow":
        archive.add_variable_collection("gallery", [rows, row_labels])
    settings = {
        "k": int(k),
        "flip_tta": bool(flip_tta),
        "query_expansion": int(query_expansion),
        "query_expansion_alpha": float(query_expansion_alpha),
        "gallery_rows": int(rows.shape[0]),
        "gallery_dtype": gallery_dtype,
        "embedding_dim": dim,
        "num_classes": num_classes,
        "classes_with_rows": int(present.sum()),
        "image_size": int(image_size),
        "channels": int(channels),
        "resize": resize,
    }
    return _write(archive, path, class_ids, settings)


def _check_gallery(gallery, gallery_labels, num_classes, dim, k, query_expansion):
    """Validated (labels int32 [G], class-has-rows mask [K]); errors name the mismatch."""
    if len(gallery.shape) != 2 or gallery.shape[0] == 0:
        raise ValueError(f"gallery must be a non-empty [G, D] array, got shape {tuple(gallery.shape)}")
    if gallery.shape[1] != dim:
        raise ValueError(f"gallery dim {gallery.shape[1]} != the model's embedding dim {dim}")
    labels = np.asarray(gallery_labels).reshape(-1)
    if labels.shape[0] != gallery.shape[0]:
        raise ValueError(f"gallery has {gallery.shape[0]} rows but {labels.shape[0]} labels")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"gallery_labels must be class indexes in [0, {num_classes}) (positions in class_ids)")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 <= query_expansion <= gallery.shape[0]:
        raise ValueError(f"query_expansion must be in [0, {gallery.shape[0]}] (gallery rows), got {query_expansion}")
    present = np.zeros(num_classes, bool)
    present[labels] = True
    return labels.astype(np.int32), present


def _normalised_copy(gallery, dtype: str = "float32"):
    """L2-normalised (in float32) copy of ``gallery`` in ``dtype``, read block by block (a memmap is read once)."""
    out = np.empty(gallery.shape, dtype)
    block = max(1, _COPY_BYTES // (gallery.shape[1] * 4))
    for start in range(0, gallery.shape[0], block):
        out[start : start + block] = l2_normalize(gallery[start : start + block])
    return out


def _write(archive, path, class_ids, settings):
    """``archive`` + classes.json + retrieval.json, written atomically (``saved_model.write_archive``)."""
    from keras_fgvc.data import classes as class_map

    def extra_files(folder):
        class_map.save(class_ids, folder)
        with open(os.path.join(folder, RETRIEVAL_FILE), "w") as f:
            json.dump(settings, f, indent=2)

    return write_archive(archive, path, extra_files)
