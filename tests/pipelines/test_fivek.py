"""The 5K staged pseudo-labelling pipeline on the smoke config: tables, provenance, metrics,
stage hand-over, refusals, and the exported bytes-in signature."""

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras
from keras_fgvc.config.compose import compose
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.models import build_model
from keras_fgvc.training.callbacks import BEST
from run import main
from tests.fixtures import bad_images


def overrides(root, *extra):
    return ["smoke=true", f"runs_root={root}/runs", f"export.dir={root}/saved", f"data.demo_root={root}/demo", *extra]


BYTES_FED = 8  # the first image files by name, which the export tests below feed as JPEG bytes


@pytest.fixture(scope="module")
def spoiled_demo(tmp_path_factory):
    """The smoke run's demo, made here as the run would make it, with the images of its last three
    rows (all 'train', partly labelled) spoiled: the run below skips them (docs/RELIABILITY.md).
    The 5K layout lists every file in train_meta.csv and refuses a listed file that is missing
    (a table error), so the bad files are the three kinds a file on disk can be.

    Two public-test images are spoiled too (truncated, 0 bytes), inside public_test_meta.csv and
    not among the ``BYTES_FED`` files: Zalo's submission still needs their rows (the prior's).
    Returns ``(root, demo, spoiled train files, spoiled test files)``, each ``{path: reason}``."""
    from keras_fgvc.pipelines import pseudo_label

    root = tmp_path_factory.mktemp("fivek")
    demo = Path(pseudo_label.data_root(compose(overrides(root))))
    names = pd.read_csv(demo / "train_meta.csv")["fname"].iloc[-3:]
    bad_train = bad_images.spoil([demo / "images" / name for name in names])
    fed = {path.name for path in sorted((demo / "images").iterdir())[:BYTES_FED]}
    inside = [name for name in pd.read_csv(demo / "public_test_meta.csv")["fname"].iloc[1:-1] if name not in fed]
    bad_test = bad_images.spoil([demo / "images" / name for name in (inside[0], inside[len(inside) // 2])])
    return root, demo, bad_train, bad_test


@pytest.fixture(scope="module")
def smoke_run(spoiled_demo):
    root, demo, _, _ = spoiled_demo
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(overrides(root)) == 0
    sys.stdout.write(printed.getvalue())  # still shown by pytest, as without the capture
    cfg = compose(overrides(root))
    return root, cfg, demo, printed.getvalue()


def readable_rows(demo, spoiled_demo):
    """train_meta.csv without the rows whose image the fixture spoiled (the rows the run keeps)."""
    source = pd.read_csv(demo / "train_meta.csv")
    bad = spoiled_demo[2]
    return source[~source["fname"].map(lambda name: str(demo / "images" / name)).isin(bad)].reset_index(drop=True)


def table(cfg, stage):
    return pd.read_csv(os.path.join(cfg.run_dir, stage, "table.csv"))


def test_every_stage_writes_its_table_metrics_and_export(smoke_run, spoiled_demo):
    root, cfg, _, _ = smoke_run
    for stage in ("mask", "distancing", "fivek"):
        for name in ("table.csv", "metrics.json", "history.csv", "confusion.png", BEST, "last.weights.h5"):
            assert os.path.isfile(os.path.join(cfg.run_dir, stage, name)), (stage, name)
        # from_pixels: the model on decoded pixels, which the byte endpoints call (export/archive.py)
        assert set(tf.saved_model.load(str(root / "saved" / "fivek" / "smoke" / stage)).signatures) == {
            "serving_default", "embed", "from_pixels"}
    summary = json.loads(open(os.path.join(cfg.run_dir, "metrics.json")).read())
    assert set(summary) == {"mask", "distancing", "fivek", "data"}
    assert summary["data"] == {"images_checked": cfg.data.demo.num_images + cfg.data.demo.test_images,
                               "bad_files": len(spoiled_demo[2]) + len(spoiled_demo[3]),
                               "test_unreadable": len(spoiled_demo[3]),
                               "bad_files_list": os.path.join(cfg.run_dir, "bad_files.txt")}


def test_spoiled_images_are_skipped_listed_and_no_stage_sees_them(smoke_run, spoiled_demo):
    _, cfg, demo, printed = smoke_run
    bad, every_bad = spoiled_demo[2], {**spoiled_demo[2], **spoiled_demo[3]}
    listed = dict(line.split("\t") for line in Path(cfg.run_dir, "bad_files.txt").read_text().splitlines())
    assert set(listed) == set(every_bad) and all(listed[path].startswith(reason) for path, reason in every_bad.items())
    total = cfg.data.demo.num_images + cfg.data.demo.test_images
    first = next(iter(bad))  # the tables' order (train, then the public test): the first spoiled row
    assert (f"images: {len(every_bad)} of {total} unreadable, skipped (listed in bad_files.txt); first: {first}: "
            in printed)
    kept = readable_rows(demo, spoiled_demo)["image_id"].tolist()
    assert len(kept) == cfg.data.demo.num_images - len(bad)
    for stage in ("mask", "distancing", "fivek"):  # every stage trained and predicted without them
        assert table(cfg, stage)["image_id"].tolist() == kept
    report = Path(cfg.run_dir, "report.md").read_text()
    assert all(f"- `{path}`: {listed[path]}" in report for path in every_bad)


def test_human_labels_are_kept_and_pseudo_labels_are_confident(smoke_run, spoiled_demo):
    _, cfg, demo, _ = smoke_run
    source = readable_rows(demo, spoiled_demo)
    final = table(cfg, "fivek")
    assert final["image_id"].tolist() == source["image_id"].tolist()
    for label in ("mask", "distancing"):
        human = source[label].notna()
        assert (final.loc[human, label] == source.loc[human, label]).all()
        assert (final.loc[human, f"{label}_source"] == "human").all()
        pseudo = final[f"{label}_source"] == "pseudo"
        assert (final.loc[pseudo, f"{label}_confidence"] >= cfg.pseudo_label.threshold).all()
        assert final.loc[pseudo, label].isin([0, 1]).all()
        assert (final.loc[~human & ~pseudo, label].isna()).all()
    raw = pd.read_csv(os.path.join(cfg.run_dir, "fivek", "table.csv"), dtype=str, keep_default_na=False)
    assert set(raw["mask"]) <= {"0", "1", ""} and set(raw["5k"]) <= {"0", "1", ""}  # 1, not 1.0


def test_5k_follows_mask_and_distancing(smoke_run):
    _, cfg, _, _ = smoke_run
    final = table(cfg, "fivek")
    decided = final["5k"].notna()
    both = final["mask"].notna() & final["distancing"].notna()
    expected = (final["mask"] == 1) & (final["distancing"] == 1)
    assert (final.loc[both & decided, "5k"] == expected[both & decided].astype(float)).all()
    ruled = final["5k_source"] == "rule"
    assert ruled.any() and (final.loc[ruled, "5k"] == expected[ruled].astype(float)).all()


def test_label_source_summarises_each_row(smoke_run):
    _, cfg, _, _ = smoke_run
    final = table(cfg, "fivek")
    for _, row in final.iterrows():
        parts = {}
        for label in ("mask", "distancing", "5k"):
            if row[f"{label}_source"] == "pseudo":
                parts[label] = f"{label}=pseudo:{row[f'{label}_confidence']:.3f}"
            elif row[f"{label}_source"] != "human":
                parts[label] = f"{label}={row[f'{label}_source']}"
        assert row["label_source"] == (";".join(parts.values()) or "human")


def test_metrics_agree_with_the_tables_and_the_hidden_truth(smoke_run, spoiled_demo):
    _, cfg, demo, _ = smoke_run
    truth = pd.read_csv(demo / "truth.csv").set_index("image_id")
    before = readable_rows(demo, spoiled_demo)
    for stage, label in (("mask", "mask"), ("distancing", "distancing")):
        metrics = json.loads(open(os.path.join(cfg.run_dir, stage, "metrics.json")).read())
        after = table(cfg, stage)
        pseudo = after[f"{label}_source"] == "pseudo"
        assert metrics["missing_before"] == int(before[label].isna().sum())
        assert metrics["pseudo_labelled"] == int(pseudo.sum())
        if pseudo.any():
            true = truth.loc[after.loc[pseudo, "image_id"], label].to_numpy()
            assert metrics["pseudo_label_accuracy"] == pytest.approx(float((after.loc[pseudo, label].to_numpy() == true).mean()))


def test_public_test_predictions_cover_every_test_image(smoke_run):
    _, cfg, demo, _ = smoke_run
    test = pd.read_csv(demo / "public_test_meta.csv")
    submission = pd.read_csv(os.path.join(cfg.run_dir, "fivek", "submission.csv"))
    assert list(submission.columns) == ["fname", "5k"]
    assert submission["fname"].tolist() == test["fname"].tolist() and submission["5k"].isin([0, 1]).all()
    predictions = pd.read_csv(os.path.join(cfg.run_dir, "fivek", "predictions.csv"))
    assert predictions["fname"].tolist() == test["fname"].tolist()
    np.testing.assert_allclose(predictions["p_0"] + predictions["p_1"], 1.0, atol=2e-6)
    assert (predictions["label"] == submission["5k"]).all()


def test_5k_submission_uses_the_predictor_and_threshold_chosen_on_validation(smoke_run):
    root, cfg, demo, _ = smoke_run
    metrics = json.loads(open(os.path.join(cfg.run_dir, "fivek", "metrics.json")).read())
    decision = metrics["decision"]
    assert set(decision) == {"submission_predictor", "trained", "product"}
    assert metrics["decision_threshold"] == decision["trained"]["threshold"]
    # The predictor with the better validation F1 (ties: the trained model) made the submission.
    expected = "product" if decision["product"]["val_f1"] > decision["trained"]["val_f1"] else "trained"
    assert decision["submission_predictor"] == expected
    predictions = pd.read_csv(os.path.join(cfg.run_dir, "fivek", "predictions.csv"))
    chosen = decision[expected]["threshold"]
    np.testing.assert_array_equal(predictions["label"], (predictions["p_1"] >= chosen).astype(int))
    served = tf.saved_model.load(str(root / "saved" / "fivek" / "smoke" / "fivek")).signatures["serving_default"](
        image_bytes=tf.constant([f.read_bytes() for f in sorted((demo / "images").iterdir())[:8]]))
    np.testing.assert_array_equal(served["top_class"].numpy(),
                                  (served["probabilities"].numpy()[:, 1] >= metrics["decision_threshold"]).astype(int))
    # No stage trains on the validation or held-out rows.
    final = table(cfg, "fivek")
    assert set(final["split"]) == {"train", "val", "test"}
    assert (final.loc[final["split"] != "train", [f"{label}_source" for label in ("mask", "distancing", "5k")]] == "human").all().all()


def test_unreadable_public_test_images_get_the_prior_and_the_others_the_models_answer(smoke_run, spoiled_demo):
    from keras_fgvc.training.stages import stage_config

    _, cfg, demo, printed = smoke_run
    bad_test = spoiled_demo[3]
    test = pd.read_csv(demo / "public_test_meta.csv")
    bad = test["fname"].map(lambda name: str(demo / "images" / name)).isin(bad_test).to_numpy()
    assert bad.sum() == len(bad_test) == 2 and not bad[0] and not bad[-1]
    submission = pd.read_csv(os.path.join(cfg.run_dir, "fivek", "submission.csv"))
    predictions = pd.read_csv(os.path.join(cfg.run_dir, "fivek", "predictions.csv"))
    assert len(submission) == len(predictions) == len(test)  # one row per test row, readable or not
    # listed and counted: bad_files.txt with its reason, metrics.json
    listed = dict(line.split("\t") for line in Path(cfg.run_dir, "bad_files.txt").read_text().splitlines())
    assert all(listed[path].startswith(reason) for path, reason in bad_test.items())
    metrics = json.loads(Path(cfg.run_dir, "fivek", "metrics.json").read_text())
    assert json.loads(Path(cfg.run_dir, "metrics.json").read_text())["data"]["test_unreadable"] == 2
    assert (metrics["test_predictions"], metrics["test_unreadable"]) == (len(test), 2)
    # the prior: 5k's frequency in the rows the fivek stage trained on (the distancing stage's
    # completed table: split 'train', 5k known), decided at the submission predictor's threshold
    before = table(cfg, "distancing")
    trained_on = before.loc[(before["split"] == "train") & before["5k"].notna(), "5k"].to_numpy()
    p_1 = float(np.mean(trained_on == 1))
    decision = metrics["decision"]
    label = int(p_1 >= decision[decision["submission_predictor"]]["threshold"])
    np.testing.assert_allclose(predictions.loc[bad, "p_1"], p_1, atol=1e-6)
    np.testing.assert_allclose(predictions.loc[bad, "p_0"], 1 - p_1, atol=1e-6)
    assert (predictions.loc[bad, "label"] == label).all() and (submission.loc[bad, "5k"] == label).all()
    assert metrics["test_prior"] == {"p_1": pytest.approx(p_1), "label": label}
    assert (f"stage 'fivek': 2 unreadable public-test images answered with the prior, P(5k=1) {p_1:.3f} "
            f"in the training rows -> 5k={label}") in printed
    # every other row: the submission predictor's P(5k = 1) on its own image
    images = np.stack([model_pixels((demo / "images" / name).read_bytes(), cfg.data.image_size).numpy()
                       for name in test.loc[~bad, "fname"]])

    # pseudo_label.tta=flip (the default): P averaged over the image and its mirror
    assert cfg.pseudo_label.tta == "flip"

    def positive(stage_name):
        stage = next(s for s in cfg.train.stages if s.name == stage_name)
        model = build_model(stage_config(cfg, stage), 2)
        model.load_weights(os.path.join(cfg.run_dir, stage_name, BEST))
        views = (images, images[:, :, ::-1])
        return np.mean([keras.ops.convert_to_numpy(keras.ops.softmax(model(view, training=False)["logits"]))[:, 1]
                        for view in views], axis=0)

    expected = positive("fivek") if decision["submission_predictor"] == "trained" else (
        positive("mask") * positive("distancing"))
    np.testing.assert_allclose(predictions.loc[~bad, "p_1"], expected, atol=1e-5)
    np.testing.assert_array_equal(submission.loc[~bad, "5k"], predictions.loc[~bad, "label"])


def test_export_on_raw_jpeg_bytes_equals_the_keras_model(smoke_run):
    root, cfg, demo, _ = smoke_run
    model = build_model(cfg, 2)
    model.load_weights(os.path.join(cfg.run_dir, "fivek", BEST))
    files = sorted((demo / "images").iterdir())[:5]
    encoded = [f.read_bytes() for f in files]
    served = tf.saved_model.load(str(root / "saved" / "fivek" / "smoke" / "fivek")).signatures["serving_default"](
        image_bytes=tf.constant(encoded)
    )
    pixels = np.stack([model_pixels(e, cfg.data.image_size).numpy() for e in encoded])
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(pixels, training=False)["logits"]))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    embedding = tf.saved_model.load(str(root / "saved" / "fivek" / "smoke" / "fivek")).signatures["embed"](
        image_bytes=tf.constant(encoded)
    )["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_a_stage_without_its_previous_table_exits_2_and_writes_nothing(tmp_path, capsys):
    assert main(overrides(tmp_path, "stage=distancing")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "stage 'distancing' needs the completed table of stage 'mask'" in error[0] and "run stage=mask first" in error[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved").exists()


def test_a_stage_alone_without_the_checkpoint_it_starts_from_exits_2(smoke_run, tmp_path, capsys):
    root, cfg, _, _ = smoke_run
    previous = os.path.join(cfg.run_dir, "distancing", "table.csv")
    args = overrides(tmp_path, "stage=fivek", f"pseudo_label.input_table={previous}", f"data.demo_root={root}/demo")
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "stage 'fivek' starts from stage 'distancing'" in error[0]
    assert "run stage=distancing first" in error[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved").exists()


def test_existing_export_is_refused_before_any_work(smoke_run, capsys):
    root, cfg, _, _ = smoke_run
    marker = root / "saved" / "fivek" / "smoke" / "mask" / "saved_model.pb"
    written = {path: path.stat().st_mtime_ns for path in (marker, Path(cfg.run_dir) / "metrics.json")}
    assert main(overrides(root)) == 2  # the same run again, without export.overwrite
    assert "already exists; set export.overwrite=true" in capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in written} == written


def test_a_second_process_on_the_run_folder_refuses(smoke_run, capsys):
    from keras_fgvc.tracking.run_dir import run_lock

    root, cfg, _, _ = smoke_run
    written = {path: path.stat().st_mtime_ns for path in Path(cfg.run_dir).rglob("*") if path.is_file()}
    with run_lock(cfg.run_dir):  # as if another run.py were working in it
        assert main(overrides(root, "resume=true", "export.overwrite=true")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: run folder {cfg.run_dir} is in use by another process (pid {os.getpid()}); "
                     "wait for it to finish, or start this run under another name="]
    assert {path: path.stat().st_mtime_ns for path in written} == written


def test_a_stage_run_alone_keeps_the_other_stages_numbers_and_writes_its_config(smoke_run, tmp_path):
    import shutil

    import yaml

    root, cfg, _, _ = smoke_run
    shutil.copytree(root / "runs", tmp_path / "runs")  # the module's run stays as it is
    before = json.loads(open(os.path.join(cfg.run_dir, "metrics.json")).read())
    args = overrides(tmp_path, "stage=mask", f"data.demo_root={root}/demo", "export.enabled=false")
    assert main(args) == 0
    run_dir = compose(args).run_dir
    after = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    assert set(after) == set(before) and after["distancing"] == before["distancing"]
    assert after["fivek"] == before["fivek"]
    stage_config = yaml.safe_load(open(os.path.join(run_dir, "mask", "config.yaml")))
    assert stage_config["stage"] == "mask" and stage_config["train"]["epochs"] == cfg.train.stages[0].epochs
    assert yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))["stage"] == "mask"  # the latest command


def test_the_run_report_shows_every_stage_and_task_report_redoes_it(smoke_run, capsys):
    from tests.tracking.report_checks import check_report

    root, cfg, _, _ = smoke_run
    check_report(cfg.run_dir, ["mask", "distancing", "fivek"])
    report = Path(cfg.run_dir, "report.html")
    before = report.stat().st_mtime_ns
    assert main(overrides(root, "task=report")) == 0
    assert report.stat().st_mtime_ns > before and f"report: {report}" in capsys.readouterr().out
    check_report(cfg.run_dir, ["mask", "distancing", "fivek"])  # the command kept from the run


def test_task_report_outside_a_run_folder_is_one_line(tmp_path, capsys):
    assert main(overrides(tmp_path, "task=report", "name=nothing")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: task=report: {tmp_path}/runs/fivek/nothing is not a run folder (no config.yaml); "
        "give the pipeline= and name= of a run"]


def test_exports_belong_to_the_run(tmp_path):
    from keras_fgvc.export.stage import stage_export_path

    first, second = (compose(overrides(tmp_path, f"name={name}")) for name in ("first", "second"))
    assert stage_export_path(first, "mask") == f"{tmp_path}/saved/fivek/first/mask"
    assert stage_export_path(second, "mask") == f"{tmp_path}/saved/fivek/second/mask"


def test_missing_data_root_names_the_file(tmp_path, capsys):
    assert main(overrides(tmp_path, f"data.root={tmp_path}/nowhere", "export.enabled=false")) == 2
    assert f"{tmp_path}/nowhere/train_meta.csv: file not found" in capsys.readouterr().err
