"""The 5k stage on imbalanced labels (10% positives, as real 5K data is): a decision threshold
chosen on validation for F1, recorded in metrics.json and used by the SavedModel's top_class.

The picture shows the labels: a red square when mask=1, a blue square when distancing=1, on noise;
5k = mask AND distancing is positive in 10% of the rows. Only the 5k stage runs (from a completed
table, ``pseudo_label.input_table``), so the test trains one small model; the same run checks what
a stage run alone from an explicit table writes, and its TFLite export.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.config.compose import compose
from keras_fgvc.export.saved_model import DECISION_FILE
from keras_fgvc.pipelines.pseudo_label import initial_table
from keras_fgvc.data.sources import fivek as fivek_source
from run import main

ROWS, SIZE, POSITIVE_RATE = 400, 32, 0.10


def write_zalo_layout(root) -> None:
    rng = np.random.default_rng(0)
    os.makedirs(root / "images")
    five_k = rng.random(ROWS) < POSITIVE_RATE
    # Negatives: mask only, distancing only or neither, in equal parts.
    kind = rng.integers(0, 3, ROWS)
    mask = np.where(five_k, 1, kind == 1).astype(int)
    distancing = np.where(five_k, 1, kind == 2).astype(int)
    rows = []
    for i in range(ROWS):
        pixels = rng.normal(110, 35, (SIZE, SIZE, 3))
        for present, colour, left in ((mask[i], (230, 30, 30), 2), (distancing[i], (30, 30, 230), 17)):
            if present:
                top = int(rng.integers(2, SIZE - 13))
                pixels[top:top + 11, left:left + 11] = colour
        fname = f"{i:04d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(root / "images" / fname)
        rows.append({"image_id": i + 1, "fname": fname, "mask": mask[i], "distancing": distancing[i],
                     "5k": int(mask[i] and distancing[i])})
    pd.DataFrame(rows).to_csv(root / "train_meta.csv", index=False)


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("imbalanced")
    write_zalo_layout(root / "data")
    table = initial_table(fivek_source.load(str(root / "data")), 0.2, 0.2, seed=0)
    table.to_csv(root / "completed.csv", index=False)
    # data.max_rows=0: the test's 400 rows are already small; smoke=true alone would cut them to 256.
    args = ["smoke=true", "data.max_rows=0", f"runs_root={root}/runs", f"export.dir={root}/saved", f"data.root={root}/data",
            "stage=fivek", f"pseudo_label.input_table={root}/completed.csv", "train.stages.2.init_from=none",
            "train.stages.2.epochs=8", "model.backbone=ghostnet_050", f"data.image_size={SIZE}",
            "export.tflite=[float32,int8]"]
    assert main(args) == 0
    cfg = compose(args)
    metrics = json.loads(open(os.path.join(cfg.run_dir, "fivek", "metrics.json")).read())
    return root, cfg, table, metrics


def test_labels_are_imbalanced_like_real_5k(imbalanced_run):
    _, _, table, _ = imbalanced_run
    assert table["5k"].mean() == pytest.approx(POSITIVE_RATE, abs=0.03)
    assert set(table["split"]) == {"train", "val", "test"}


def test_the_threshold_is_chosen_on_validation_and_beats_all_negative_and_all_positive(imbalanced_run):
    _, _, table, metrics = imbalanced_run
    trained = metrics["decision"]["trained"]
    assert metrics["decision_threshold"] == trained["threshold"]
    positives = table.loc[table["split"] == "val", "5k"].mean()
    all_positive_f1 = 2 * positives / (1 + positives)  # the all-negative F1 is 0
    assert trained["val_f1"] > all_positive_f1 + 0.2
    assert metrics["heldout_f1"] == trained["heldout_f1"] > 0.0
    # No mask / distancing stage ran in this run directory: the product predictor is absent.
    assert metrics["decision"]["submission_predictor"] == "trained" and "product" not in metrics["decision"]


def test_a_stage_run_alone_from_an_explicit_table_starts_from_scratch(imbalanced_run):
    _, _, table, metrics = imbalanced_run
    # init_from=none: a stage alone in a fresh run directory has no previous checkpoint to start from.
    assert metrics["warm_start"] is None
    trainable = table[(table["split"] == "train") & (table["5k_source"] == "human")]
    assert metrics["human_labelled"] == int((table["5k_source"] == "human").sum())
    assert metrics["trained_on"] == len(trainable)


def test_tflite_files_sit_next_to_the_saved_model_and_match_keras(imbalanced_run):
    _, _, _, metrics = imbalanced_run
    flat, int8 = metrics["export"]["tflite_float32"], metrics["export"]["tflite_int8"]
    assert flat["path"].endswith("saved/fivek/smoke/fivek.float32.tflite") and os.path.isfile(int8["path"])
    assert flat["max_abs_diff"] < 1e-4 and flat["top1_agreement"] == 1.0
    assert flat["num_images"] == int8["num_images"] > 0
    assert int8["size_mb"] < 0.35 * flat["size_mb"]


def test_the_saved_model_decides_with_the_chosen_threshold(imbalanced_run):
    root, _, table, metrics = imbalanced_run
    export = root / "saved" / "fivek" / "smoke" / "fivek"
    threshold = json.loads((export / DECISION_FILE).read_text())["decision_threshold"]
    assert threshold == metrics["decision_threshold"]
    rows = table[table["split"] == "val"]
    encoded = [open(path, "rb").read() for path in rows["path"]]
    served = tf.saved_model.load(str(export)).signatures["serving_default"](image_bytes=tf.constant(encoded))
    positive = served["probabilities"].numpy()[:, 1]
    np.testing.assert_array_equal(served["top_class"].numpy(), (positive >= threshold).astype(int))
