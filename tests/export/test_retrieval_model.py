import io
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.config.compose import compose
from keras_fgvc.data import classes as class_map
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.errors import UserError
from keras_fgvc.evaluation.retrieval import rank_classes
from keras_fgvc.export.retrieval_model import RETRIEVAL_FILE, export_retrieval_model
from keras_fgvc.models import build_model

SIZE = 32
CLASS_IDS = [101, 7, 55, 3, 2048, 9, 64]  # original ids in index order; index 6 (64) has no gallery rows
# class 2 has four rows; classes 1 and 4 share one identical row, so their scores tie exactly
LABELS = np.array([0, 2, 1, 2, 3, 2, 4, 5, 2, 0, 5, 3])
TIED_ROWS = (2, 6)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def encoded_images():
    """Files as a client sends them: JPEG and PNG, RGB, greyscale and RGBA, sizes other than 32."""
    rng = np.random.default_rng(0)
    files = []
    for fmt, mode, shape in [("JPEG", "RGB", (40, 56, 3)), ("PNG", "L", (24, 30)), ("PNG", "RGBA", (32, 32, 4)),
                             ("JPEG", "RGB", (64, 48, 3))]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, format=fmt)
        files.append(buffer.getvalue())
    return files


def alpha_query_expansion(query, gallery, n, alpha):
    """Reference alpha QE (Radenovic, Tolias & Chum, TPAMI 2018): q + sum max(s_i, 0)^alpha g_i, renormalised."""
    similarity = query @ gallery.T
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :n]
    weights = np.maximum(np.take_along_axis(similarity, top, axis=1), 0.0) ** alpha
    return unit(query + np.einsum("bn,bnd->bd", weights, gallery[top]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = compose(["smoke=true", "model.backbone=ghostnet_050", f"data.image_size={SIZE}", "augment.preset=none"])
    keras.utils.set_random_seed(0)  # fixed weights, so the gaps between ranked scores are the same every run
    model = build_model(cfg, num_classes=4)
    files = encoded_images()
    pixels = tf.stack([model_pixels(tf.constant(f), SIZE) for f in files])
    plain = model(pixels, training=False)["embedding"].numpy().astype(np.float64)
    mirrored = model(tf.reverse(pixels, axis=[2]), training=False)["embedding"].numpy().astype(np.float64)

    # gallery rows near the queries, so similarities (and the QE weights) are far from zero
    rng = np.random.default_rng(1)
    dim = plain.shape[1]
    anchors = np.concatenate([plain, mirrored])[rng.integers(0, 2 * len(files), len(LABELS))]
    gallery = unit(anchors + rng.normal(0, rng.uniform(0.01, 0.05, (len(LABELS), 1)), (len(LABELS), dim)))
    gallery[list(TIED_ROWS)] = unit(plain[0] + rng.normal(0, 0.003, dim))  # query 0's best match, twice
    gallery = gallery.astype(np.float32)
    folder = tmp_path_factory.mktemp("retrieval")
    np.save(folder / "gallery.npy", gallery)
    mapped = np.load(folder / "gallery.npy", mmap_mode="r")  # what extract_embeddings hands over

    base = export_retrieval_model(model, str(folder / "plain"), SIZE, mapped, LABELS, CLASS_IDS)
    tta_qe = export_retrieval_model(model, str(folder / "tta_qe"), SIZE, gallery, LABELS, CLASS_IDS, k=8,
                                    flip_tta=True, query_expansion=3, query_expansion_alpha=3.0)
    return {
        "model": model, "files": files, "gallery": gallery, "plain": unit(plain), "tta": unit(plain + mirrored),
        "base_path": base, "base": tf.saved_model.load(base), "tta_qe": tf.saved_model.load(tta_qe),
    }


def serve(loaded, files):
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(files))
    return out["label"].numpy(), out["score"].numpy(), [[s.decode() for s in row] for row in out["class_id"].numpy()]


def class_strings(labels):
    return [[str(CLASS_IDS[i]) if i >= 0 else "" for i in row] for row in labels]


def test_serving_default_ranks_classes_like_rank_classes(setup):
    labels, scores, ids = serve(setup["base"], setup["files"])
    want_labels, want_scores = rank_classes(setup["plain"], setup["gallery"], LABELS, k=5)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert labels.dtype == np.int32 and scores.dtype == np.float32 and labels.shape == (4, 5)
    assert ids == class_strings(labels)
    assert (labels != 6).all()  # a class without gallery rows is never ranked
    # the shared row gives classes 1 and 4 one score: the smaller label comes first
    tied = [row for row in labels.tolist() if 1 in row and 4 in row]
    assert tied and all(row.index(1) + 1 == row.index(4) for row in tied)


def test_embed_signature_is_the_query_embedding(setup):
    served = setup["base"].signatures["embed"](image_bytes=tf.constant(setup["files"]))["embedding"].numpy()
    np.testing.assert_allclose(served, setup["plain"], atol=1e-5)
    tta = setup["tta_qe"].signatures["embed"](image_bytes=tf.constant(setup["files"]))["embedding"].numpy()
    np.testing.assert_allclose(tta, setup["tta"], atol=1e-5)


def test_flip_tta_and_query_expansion_match_numpy_and_pad_past_the_classes(setup):
    labels, scores, ids = serve(setup["tta_qe"], setup["files"])
    expanded = alpha_query_expansion(setup["tta"], setup["gallery"].astype(np.float64), n=3, alpha=3.0)
    want_labels, want_scores = rank_classes(expanded, setup["gallery"], LABELS, k=8)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # 6 classes have rows, k=8: two padded slots per query
    assert (labels[:, 6:] == -1).all() and np.isneginf(scores[:, 6:]).all() and (labels[:, :6] >= 0).all()
    assert ids == class_strings(labels) and all(row[6:] == ["", ""] for row in ids)
    # QE has to move the scores, or the comparison above would not test it
    _, unexpanded = rank_classes(setup["tta"], setup["gallery"], LABELS, k=8)
    assert np.abs(scores[:, :6] - unexpanded[:, :6]).max() > 1e-3


def test_settings_and_classes_travel_with_the_export(setup):
    settings = json.loads((Path(setup["base_path"]) / RETRIEVAL_FILE).read_text())
    assert settings["k"] == 5 and settings["flip_tta"] is False and settings["query_expansion"] == 0
    assert settings["gallery_rows"] == len(LABELS) and settings["embedding_dim"] == setup["gallery"].shape[1]
    assert settings["num_classes"] == len(CLASS_IDS) and settings["classes_with_rows"] == 6
    assert class_map.load(setup["base_path"]) == CLASS_IDS
    np.testing.assert_array_equal(setup["base"].gallery[1].numpy(), LABELS)


def test_existing_export_is_kept_without_overwrite(setup):
    path = setup["base_path"]
    before = sorted(os.listdir(path)), (Path(path) / "saved_model.pb").read_bytes()
    siblings = sorted(os.listdir(os.path.dirname(path)))
    with pytest.raises(UserError, match="already exists"):
        export_retrieval_model(setup["model"], path, SIZE, setup["gallery"], LABELS, CLASS_IDS)
    assert (sorted(os.listdir(path)), (Path(path) / "saved_model.pb").read_bytes()) == before
    assert sorted(os.listdir(os.path.dirname(path))) == siblings  # no staging folder left behind


def test_gallery_mismatches_fail_before_export(setup, tmp_path):
    args = (setup["model"], str(tmp_path / "bad"), SIZE)
    with pytest.raises(ValueError, match="class indexes"):
        export_retrieval_model(*args, setup["gallery"], LABELS + 1, CLASS_IDS[:6])
    with pytest.raises(ValueError, match="rows but"):
        export_retrieval_model(*args, setup["gallery"], LABELS[:-1], CLASS_IDS)
    with pytest.raises(ValueError, match="embedding dim"):
        export_retrieval_model(*args, setup["gallery"][:, :8], LABELS, CLASS_IDS)
    assert not (tmp_path / "bad").exists()


# float16 keeps 11 significant bits: rounding a unit row moves each element by at most 2^-11 of
# itself, so (Cauchy-Schwarz) a cosine with a unit query moves by at most 2^-11, and two classes
# can swap only when their float32 scores are closer than twice that.
FLOAT16_SCORE_ERROR = 2.0**-11


def test_a_float16_gallery_is_half_the_bytes_and_ranks_as_float32_past_its_error(setup, tmp_path, monkeypatch):
    from keras_fgvc.export import retrieval_model

    dim = setup["gallery"].shape[1]
    # blocks of 5 rows: the 12 gallery rows are widened to float32 in three blocks, as a large gallery is
    monkeypatch.setattr(retrieval_model, "_COPY_BYTES", 5 * dim * 4)
    k = 6  # every class with rows: only the order can differ
    path = export_retrieval_model(setup["model"], str(tmp_path / "half"), SIZE, setup["gallery"], LABELS, CLASS_IDS,
                                  k=k, gallery_dtype="float16")
    half = tf.saved_model.load(path)
    rows16, rows32 = half.gallery[0], setup["base"].gallery[0]
    assert rows16.dtype == tf.float16 and rows32.dtype == tf.float32 and rows16.shape == rows32.shape
    assert 2 * rows16.numpy().nbytes == rows32.numpy().nbytes == len(LABELS) * dim * 4
    assert json.loads((Path(path) / RETRIEVAL_FILE).read_text())["gallery_dtype"] == "float16"

    labels, scores, ids = serve(half, setup["files"])
    want_labels, want_scores = rank_classes(setup["plain"], setup["gallery"], LABELS, k=k)
    assert scores.dtype == np.float32 and ids == class_strings(labels)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=FLOAT16_SCORE_ERROR + 1e-5)
    # A rank whose float32 score is more than two float16 errors from every other class's holds the same class.
    gaps = np.where(np.eye(k, dtype=bool), np.inf, np.abs(want_scores[:, :, None] - want_scores[:, None, :]))
    separated = gaps.min(axis=2) > 2 * FLOAT16_SCORE_ERROR
    assert separated.sum() >= labels.size // 2  # most ranks are checked exactly, or this would test little
    np.testing.assert_array_equal(labels[separated], want_labels[separated])
    # The rest may swap only among near-ties: each rank's class has (within the error) that rank's float32 score.
    float32_scores = {(q, label): score for q in range(len(labels))
                      for label, score in zip(want_labels[q], want_scores[q])}
    served_as_float32 = np.array([[float32_scores[q, label] for label in row] for q, row in enumerate(labels)])
    np.testing.assert_allclose(served_as_float32, want_scores, rtol=0, atol=2 * FLOAT16_SCORE_ERROR)
    # classes 1 and 4 share one row, identical in float16 too: still tied, the smaller label first
    tied = [row for row in labels.tolist() if 1 in row and 4 in row]
    assert tied and all(row.index(1) + 1 == row.index(4) for row in tied)


def test_the_gallery_dtype_is_checked(setup, tmp_path):
    with pytest.raises(ValueError, match="gallery_dtype must be one of float32, float16"):
        export_retrieval_model(setup["model"], str(tmp_path / "bad"), SIZE, setup["gallery"], LABELS, CLASS_IDS,
                               gallery_dtype="bfloat16")
    assert not (tmp_path / "bad").exists()
    # the config key is a choice, refused at compose time (run.py: one error line, exit 2)
    with pytest.raises(UserError, match="export.gallery_dtype' = 'bfloat16'; choose one of: float32, float16"):
        compose(["pipeline=hotel_id", "export.gallery_dtype=bfloat16"])
    assert compose(["pipeline=hotel_id"]).export.gallery_dtype == "float32"
