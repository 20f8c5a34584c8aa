"""pipeline=vipriors end to end through ``run.py``: one smoke run (ce -> margin -> predict) serves
every assertion (tracing dominates small runs); an ensemble and the error paths run on its files."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from keras_fgvc.config.compose import compose
from keras_fgvc.data.sources import imagenet_subset
from keras_fgvc.errors import UserError
from keras_fgvc.pipelines import dispatch, vipriors
from tests.fixtures import bad_images
from tests.pipelines.cli import run_cli


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("vipriors")
    common = ["pipeline=vipriors", "smoke=true", f"runs_root={root}/runs", f"export.dir={root}/saved",
              f"data.demo_root={root}/demo"]
    # The demo, made here as the run would make it, with bad files in train/ that the run skips
    # (docs/RELIABILITY.md): the last image of three classes spoiled (one of each kind, so every
    # class keeps images_per_class=4 for the triplet batches) and, in the fourth, a name whose file
    # is gone (a folder layout lists only names on disk: a dangling link is how one goes missing).
    demo = Path(vipriors.data_root(compose(common)))
    classes = sorted(os.listdir(demo / "train"))
    bad = bad_images.spoil([sorted((demo / "train" / wnid).iterdir())[-1] for wnid in classes[:3]])
    bad.update(bad_images.dangling_link(demo / "train" / classes[3] / f"{classes[3]}_0.JPEG"))
    # Two test images spoiled as well (truncated, 0 bytes), inside the split: the challenge's file
    # still needs their rows, which get the prior.
    test_paths = imagenet_subset.load(str(demo), "test")["path"]
    bad_test = bad_images.spoil([test_paths.iloc[3], test_paths.iloc[len(test_paths) // 2]])
    done, seconds = run_cli(*common, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"vipriors smoke (ce, margin, predict): {seconds:.0f} s")
    run = root / "runs" / "vipriors" / "smoke"
    return {"root": root, "common": common, "run": run, "stdout": done.stdout, "demo": demo, "bad": bad,
            "bad_test": bad_test}


def read_json(path):
    return json.loads(path.read_text())


def test_bad_training_images_are_skipped_listed_and_the_run_finishes(smoke):
    run, demo, bad, bad_test = smoke["run"], smoke["demo"], smoke["bad"], smoke["bad_test"]
    every_bad = {**bad, **bad_test}
    listed = dict(line.split("\t") for line in (run / "bad_files.txt").read_text().splitlines())
    assert set(listed) == set(every_bad) and all(listed[path].startswith(reason) for path, reason in every_bad.items())
    splits = {split: imagenet_subset.load(str(demo), split) for split in ("train", "val", "test")}
    total = sum(len(table) for table in splits.values())  # every file name found, the bad ones too
    # the first in the order the run checks its splits: test, val, train (classifier.split_tables)
    first = next(path for split in ("test", "val", "train") for path in splits[split]["path"] if path in every_bad)
    line = (f"images: {len(every_bad)} of {total} unreadable, skipped (listed in bad_files.txt); "
            f"first: {first}: {listed[first]}")
    assert line in smoke["stdout"].splitlines(), smoke["stdout"][-3000:]
    data = read_json(run / "metrics.json")["data"]
    assert (data["images_checked"], data["bad_files"]) == (total, len(every_bad))
    assert data["train"] == len(splits["train"]) - len(bad)  # trained on the readable rows alone
    assert (data["val"], data["test"]) == (len(splits["val"]), len(splits["test"]) - len(bad_test))
    assert data["test_unreadable"] == len(bad_test)
    report = (run / "report.md").read_text()
    assert all(f"- `{path}`: {listed[path]}" in report for path in every_bad)


def test_unreadable_test_images_get_the_prior_and_the_others_their_predictions(smoke):
    run, demo, bad, bad_test = smoke["run"], smoke["demo"], smoke["bad"], smoke["bad_test"]
    test = imagenet_subset.load(str(demo), "test")
    unreadable = test["path"].isin(bad_test).to_numpy()
    assert unreadable.sum() == len(bad_test) == 2
    # the prior: the class frequencies of the training rows the stages trained on (the readable ones)
    train = imagenet_subset.load(str(demo), "train")
    labels = train.loc[~train["path"].isin(bad), "label"].to_numpy().astype(int)
    prior = np.bincount(labels, minlength=len(train.attrs["classes"])) / len(labels)
    top = int(np.flatnonzero(prior == prior.max())[0])  # the most frequent class, the first on ties
    # the challenge file: a row per test image, in the split's order; the prior's class on the bad ones
    submission = pd.read_csv(run / "predict" / "predictions.csv")
    assert list(submission["Image IDs"]) == list(test["image_id"])
    assert (submission.loc[unreadable, "Predictions"] == top).all()
    rows = read_json(run / "predict" / "rows.json")
    assert rows["test"] == list(test["image_id"]) and rows["test_unreadable"] == list(test.loc[unreadable, "image_id"])
    predict_metrics = read_json(run / "predict" / "metrics.json")
    assert (predict_metrics["test_unreadable"], predict_metrics["test_prior"]) == (2, top)
    for stage in ("ce", "margin"):
        # the TTA file holds the same rows: the prior on the bad ones, the model's views on the others
        probabilities = np.load(run / "predict" / stage / "test_tta.npy")
        assert probabilities.shape == (len(test), len(prior))
        np.testing.assert_allclose(probabilities[unreadable], np.tile(prior, (2, 1)), atol=1e-7)
        assert not np.isclose(probabilities[~unreadable], prior, atol=1e-6).all(axis=1).any()
        # each stage's predictions.csv (single view): a row per test image, the prior's on the bad
        # ones, and every other row what the stage's export answers for its image
        single = pd.read_csv(run / stage / "predictions.csv", dtype={"image_id": str})
        assert list(single["image_id"]) == list(test["image_id"])
        classes = read_json(run / stage / "classes.json")
        columns = [f"p_{name}" for name in classes]
        np.testing.assert_allclose(single.loc[unreadable, columns].to_numpy(), np.tile(prior, (2, 1)), atol=1e-6)
        assert (single.loc[unreadable, "label"] == classes[top]).all()
        stage_metrics = read_json(run / stage / "metrics.json")
        assert (stage_metrics["test_unreadable"], stage_metrics["test_prior"]) == (2, classes[top])
        assert (f"test: 2 unreadable images get the prior in predictions.csv (the training rows' class frequencies; "
                f"most frequent: '{classes[top]}', {prior.max():.3f})") in smoke["stdout"].splitlines()
        served = tf.saved_model.load(str(smoke["root"] / "saved" / "vipriors" / "smoke" / stage)).signatures[
            "serving_default"](image_bytes=tf.constant([Path(p).read_bytes() for p in test.loc[~unreadable, "path"]]))
        np.testing.assert_allclose(single.loc[~unreadable, columns].to_numpy(), served["probabilities"].numpy(),
                                   atol=1e-5)


def test_ce_trains_from_scratch_and_margin_starts_from_ce_best_weights(smoke):
    ce = read_json(smoke["run"] / "ce" / "finished.json")["info"]
    margin = read_json(smoke["run"] / "margin" / "finished.json")["info"]
    assert ce["init_from"] is None
    assert margin["init_from"] == str(smoke["run"] / "ce" / "best.weights.h5")
    assert margin["warm_start_skipped"] == []  # the triplet recipe keeps ce's model: every layer loaded


def test_each_stage_logs_its_recipe_losses(smoke):
    ce = pd.read_csv(smoke["run"] / "ce" / "history.csv")
    margin = pd.read_csv(smoke["run"] / "margin" / "history.csv")
    assert "logits_label_smoothing_ce" in ce.columns and "embedding_batch_hard_triplet" not in ce.columns
    assert {"logits_label_smoothing_ce", "embedding_batch_hard_triplet"} <= set(margin.columns)
    # the logged total is the two terms (weights 1): the triplet ran on the margin stage's batches
    np.testing.assert_allclose(margin["loss"], margin["logits_label_smoothing_ce"] + margin["embedding_batch_hard_triplet"],
                               rtol=1e-5)


def test_lr_is_scaled_by_the_global_batch(smoke):
    config = yaml.safe_load((smoke["run"] / "config.yaml").read_text())
    assert config["train"]["lr_scaling"] == "linear" and config["data"]["batch_size"] == 8
    assert config["train"]["stages"][1]["images_per_class"] == 4  # the triplet recipe, resolved into the stage


def test_predict_scores_and_files_agree_with_the_probabilities(smoke):
    run, demo = smoke["run"], smoke["demo"]
    rows = read_json(run / "predict" / "rows.json")
    val = imagenet_subset.load(str(demo), "val")
    assert rows["val"] == list(val["image_id"]) and rows["val_labels"] == val["label"].astype(int).tolist()
    metrics = read_json(run / "predict" / "metrics.json")
    assert metrics["views"] == 16 and metrics["view_sizes"] == [32, 46, 54, 64]  # 224/320/380/448 x 32/224
    labels = np.asarray(rows["val_labels"])
    for stage in ("ce", "margin"):
        probabilities = np.load(run / "predict" / stage / "val_tta.npy")
        assert probabilities.shape == (len(val), 4)
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
        tta = metrics["stages"][stage]["tta"]
        assert tta["top1"] == pytest.approx(float(np.mean(probabilities.argmax(1) == labels)))
        single = read_json(run / stage / "metrics.json")["val"]
        assert metrics["stages"][stage]["single"] == {"top1": single["top1"], "top5": single["top5"]}
    assert metrics["submission_stage"] == "margin"
    assert read_json(run / "metrics.json")["val_top1_tta"] == metrics["stages"]["margin"]["tta"]["top1"]


def test_predictions_csv_is_the_challenge_format_for_every_test_image(smoke):
    run, demo = smoke["run"], smoke["demo"]
    submission = pd.read_csv(run / "predict" / "predictions.csv")
    test = imagenet_subset.load(str(demo), "test")
    assert list(submission.columns) == ["Image IDs", "Predictions"]
    assert list(submission["Image IDs"]) == list(test["image_id"])
    probabilities = np.load(run / "predict" / "margin" / "test_tta.npy")
    assert submission["Predictions"].tolist() == probabilities.argmax(1).tolist()
    # the class index is the sorted wnids' (the challenge toolkit's ImageFolder order)
    classes = read_json(run / "margin" / "classes.json")
    assert classes == sorted(os.listdir(demo / "train"))


def test_test_split_without_labels_is_predicted_not_scored(smoke):
    metrics = read_json(smoke["run"] / "margin" / "metrics.json")
    assert metrics["test"] == {"rows": 32 - len(smoke["bad_test"]), "labelled": False}  # the readable ones
    assert "stage 'margin': val top-1" in smoke["stdout"] and "TTA (16 views)" in smoke["stdout"]


def test_each_stage_is_exported(smoke):
    for stage in ("ce", "margin"):
        saved = smoke["root"] / "saved" / "vipriors" / "smoke" / stage
        assert (saved / "saved_model.pb").is_file()
        assert json.loads((saved / "classes.json").read_text()) == sorted(os.listdir(smoke["demo"] / "train"))


def test_ensemble_averages_the_members_tta_probabilities(smoke):
    root, run = smoke["root"], smoke["run"]
    # a second member: the smoke run with other (valid) probabilities, as another model would give
    other = root / "runs" / "vipriors" / "other"
    shutil.copytree(run / "predict", other / "predict")
    rng = np.random.default_rng(0)
    for split in ("val", "test"):
        mine = np.load(run / "predict" / "margin" / f"{split}_tta.npy")
        theirs = rng.dirichlet(np.ones(mine.shape[1]), size=len(mine)).astype(np.float32)
        np.save(other / "predict" / "margin" / f"{split}_tta.npy", theirs)
    done, _ = run_cli(*smoke["common"], f"vipriors.ensemble=[{run},{other}]", "name=ensemble", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = root / "runs" / "vipriors" / "ensemble" / "predict"
    labels = np.asarray(read_json(run / "predict" / "rows.json")["val_labels"])
    for split in ("val", "test"):
        expected = (np.load(run / "predict" / "margin" / f"{split}_tta.npy")
                    + np.load(other / "predict" / "margin" / f"{split}_tta.npy")) / 2
        np.testing.assert_allclose(np.load(folder / f"{split}_ensemble.npy"), expected, atol=1e-6)
    val = np.load(folder / "val_ensemble.npy")
    metrics = read_json(folder / "metrics.json")
    assert metrics["val"]["top1"] == pytest.approx(float(np.mean(val.argmax(1) == labels)))
    test = np.load(folder / "test_ensemble.npy")
    assert pd.read_csv(folder / "predictions.csv")["Predictions"].tolist() == test.argmax(1).tolist()


@pytest.mark.parametrize("overrides, message", [
    (["vipriors.finetune=center"], "config key 'vipriors.finetune' = 'center'; choose one of: triplet, arcface"),
    (["train.stages.1.images_per_class=3"], "config key 'train.stages.1.images_per_class' = 3"),
    (["vipriors.ensemble=[nowhere]", "name=bad"], "nowhere/predict/metrics.json not found"),
    (["stage=predict", "name=fresh"], "stage=predict: no stage of"),
])
def test_bad_input_is_a_user_error_before_anything_is_written(smoke, overrides, message):
    # In process (the CLI turns a UserError into one "error:" line and exit 2: tests/config).
    root = smoke["root"]
    before = sorted(os.listdir(root / "runs" / "vipriors"))
    with pytest.raises(UserError) as caught:
        dispatch(compose([*smoke["common"], *overrides]))
    assert message in str(caught.value)
    assert sorted(os.listdir(root / "runs" / "vipriors")) == before


def test_the_run_report_shows_both_stages(smoke):
    from tests.tracking.report_checks import check_report

    check_report(smoke["run"], ["ce", "margin"])
