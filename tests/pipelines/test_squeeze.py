"""pipeline=squeeze end to end: one smoke run of every stage (three teacher levels, the 1.0x student
alone and distilled: smoke's ``squeeze.students``) and its report through ``run.py`` in a subprocess; the assertions read its files.
Distillation is checked in-process on that run's weights: the KD loss of a batch is Hinton's formula
computed by hand, and the teacher is bit-identical after a student epoch of the engine."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from keras_fgvc.config.compose import compose
from keras_fgvc.config.validate import ConfigError
from keras_fgvc.errors import UserError
from keras_fgvc.pipelines import classifier, squeeze
from keras_fgvc.training import stages as engine
from tests.fixtures import bad_images
from tests.pipelines.cli import run_cli

TEACHERS = ["teacher0", "teacher1", "teacher2"]
STUDENTS = ["student_100_alone", "student_100_kd"]  # smoke trains one width (squeeze.students)
EVERY_STUDENT = STUDENTS + ["student_200_alone", "student_200_kd"]



def overrides(root):
    return ["pipeline=squeeze", "smoke=true", f"runs_root={root}/runs", f"export.dir={root}/saved",
            f"data.demo_root={root}/demo"]


@pytest.fixture(scope="module")
def spoiled_demo(tmp_path_factory):
    """The smoke run's demo, made here as the run would make it, with the first test image of each
    class spoiled (one of each kind): the run skips them (docs/RELIABILITY.md). In test.csv, not
    train.csv: the in-process tests below train and evaluate on the unchecked train and val tables.
    A listed file that is missing is a table error of the csv layout, so it is not planted."""
    root = tmp_path_factory.mktemp("squeeze")
    demo = Path(squeeze.data_root(compose(overrides(root))))
    test = pd.read_csv(demo / "test.csv")
    first_of_each = test.drop_duplicates("label").sort_values("label")["path"]
    return root, demo, bad_images.spoil([demo / path for path in first_of_each])


@pytest.fixture(scope="module")
def smoke(spoiled_demo):
    root = spoiled_demo[0]
    done, seconds = run_cli(*overrides(root), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"squeeze smoke run: {seconds:.0f} s")
    cfg = compose(overrides(root))
    return root, cfg, done.stdout


def read_json(path):
    return json.loads(Path(path).read_text())


def stage_metrics(cfg, name):
    return read_json(os.path.join(cfg.run_dir, name, "metrics.json"))


def test_bad_test_images_are_skipped_listed_and_every_stage_is_scored_without_them(smoke, spoiled_demo):
    _, cfg, stdout = smoke
    _, demo, bad = spoiled_demo
    listed = dict(line.split("\t") for line in Path(cfg.run_dir, "bad_files.txt").read_text().splitlines())
    assert set(listed) == set(bad) and all(listed[path].startswith(reason) for path, reason in bad.items())
    rows = {split: len(pd.read_csv(demo / f"{split}.csv")) for split in ("train", "val", "test")}
    first = next(str(demo / path) for path in pd.read_csv(demo / "test.csv")["path"] if str(demo / path) in bad)
    assert (f"images: {len(bad)} of {sum(rows.values())} unreadable, skipped (listed in bad_files.txt); "
            f"first: {first}: {listed[first]}") in stdout.splitlines()
    data = read_json(os.path.join(cfg.run_dir, "metrics.json"))["data"]
    assert (data["images_checked"], data["bad_files"]) == (sum(rows.values()), len(bad))
    assert (data["train"], data["val"], data["test"]) == (rows["train"], rows["val"], rows["test"] - len(bad))
    report = Path(cfg.run_dir, "report.md").read_text()
    assert all(f"- `{path}`: {listed[path]}" in report for path in bad)


def test_every_stage_trains_once_and_the_report_repeats_its_scores(smoke):
    _, cfg, stdout = smoke
    report = pd.read_csv(os.path.join(cfg.run_dir, "comparison.csv"))
    assert list(report["model"]) == TEACHERS + STUDENTS
    for row in report.itertuples():
        metrics = stage_metrics(cfg, row.model)
        assert metrics["epochs_run"] == 1
        assert row.val_top1 == pytest.approx(metrics["val"]["top1"])
        assert row.test_top1 == pytest.approx(metrics["test"]["top1"])
        assert row.params == metrics["params"]
        assert row.images_per_second_1 > 0 and row.wall_seconds > 0  # smoke: batch 1 only (squeeze.timing_batches)
    assert "| student_100_kd |" in stdout and "## Teacher ablation" in stdout


def test_report_params_and_sizes_are_the_rebuilt_models_and_their_files(smoke):
    from keras_fgvc.models import build_model

    _, cfg, _ = smoke
    report = pd.read_csv(os.path.join(cfg.run_dir, "comparison.csv")).set_index("model")
    backbones = {}
    for stage in squeeze.run_stages(cfg).train.stages:
        stage_cfg = engine.stage_config(cfg, stage)
        model = build_model(stage_cfg, 3)
        assert report.loc[stage.name, "params"] == model.count_params()
        weights = os.path.join(cfg.run_dir, stage.name, "best.weights.h5")
        assert report.loc[stage.name, "weights_mb"] == pytest.approx(os.path.getsize(weights) / 1e6)
        backbones[stage.name] = stage_cfg.model.backbone
    assert backbones["teacher2"] == "ghostnet_050"  # the smoke teacher (Inception-ResNet-v2 needs 75 px)
    assert backbones["student_100_alone"] == backbones["student_100_kd"] == "squeezenext_23v5_100"


def test_teacher_levels_warm_start_and_students_start_from_scratch(smoke):
    _, cfg, _ = smoke
    info = {name: read_json(os.path.join(cfg.run_dir, name, "finished.json"))["info"] for name in TEACHERS + STUDENTS}
    assert info["teacher0"]["init_from"] is None
    assert info["teacher1"]["init_from"].endswith(os.path.join("teacher0", "best.weights.h5"))
    assert info["teacher2"]["init_from"].endswith(os.path.join("teacher1", "best.weights.h5"))
    assert all(info[name]["init_from"] is None for name in STUDENTS)


def test_each_teacher_level_trains_its_recipe_losses(smoke):
    _, cfg, _ = smoke
    logged = {name: set(pd.read_csv(os.path.join(cfg.run_dir, name, "history.csv")).columns) for name in TEACHERS}
    assert {"logits_sparse_ce"} <= logged["teacher0"] and "pre_logits_center" not in logged["teacher0"]
    assert {"logits_sparse_ce", "pre_logits_center", "pre_logits_prelogit_norm"} <= logged["teacher1"]
    assert {"logits_hard_mining", "pre_logits_center", "pre_logits_prelogit_norm",
            "embedding_batch_hard_triplet"} <= logged["teacher2"]
    stages = {s.name: s for s in cfg.train.stages}
    assert [s.augment for s in cfg.train.stages[:3]] == ["squeeze_level0", "squeeze_level1", "squeeze_level2"]
    assert [t.weight for t in stages["teacher1"].losses["pre_logits"]] == [1e-5, 1e-5]  # seed 003, level 1
    assert [t.weight for t in stages["teacher2"].losses["pre_logits"]] == [1e-4, 1e-4]  # seed 003, level 2
    assert stages["teacher2"].train == {"learning_rate": 5e-5}
    for name in ("student_100_kd",):
        assert "logits_distillation" in pd.read_csv(os.path.join(cfg.run_dir, name, "history.csv")).columns
        assert stages[name].teacher == "teacher2"


def test_report_md_has_the_ablation_and_the_distillation_verdict_per_width(smoke):
    _, cfg, _ = smoke
    text = Path(cfg.run_dir, "comparison.md").read_text()
    report = read_json(os.path.join(cfg.run_dir, "comparison.json"))
    assert [row["stage"] for row in report["ablation"]] == TEACHERS
    assert [(r["center loss"], r["PLN"], r["HIM"], r["triplet"]) for r in report["ablation"]] == [
        (False, False, False, False), (True, True, False, False), (True, True, True, True)]
    gains = {g["backbone"]: g for g in report["gains"]}
    rows = {r["model"]: r for r in report["rows"]}
    assert list(gains) == ["squeezenext_23v5_100"]
    assert gains["squeezenext_23v5_100"]["test_gain"] == pytest.approx(
        rows["student_100_kd"]["test_top1"] - rows["student_100_alone"]["test_top1"])
    verdict = "beats" if gains["squeezenext_23v5_100"]["test_gain"] > 0 else "does not beat"
    assert f"- squeezenext_23v5_100: distillation {verdict} the student trained alone" in text


def distillation_trainer(cfg, stage_name, num_classes):
    """The student's Trainer as the engine builds it (losses from the stage config, teacher loaded)."""
    from keras_fgvc.models import build_model
    from keras_fgvc.models.build import training_model
    from keras_fgvc.training.trainer import Trainer

    stage = next(s for s in cfg.train.stages if s.name == stage_name)
    student = build_model(engine.stage_config(cfg, stage), num_classes)
    student.load_weights(os.path.join(cfg.run_dir, stage_name, "best.weights.h5"))
    network = training_model(student)
    teacher = engine.load_teacher(cfg, stage, lambda c: build_model(c, num_classes))
    return Trainer(network, engine.loss_terms(stage, network, num_classes), teacher=teacher), student, teacher


def val_batch(cfg, root):
    from keras_fgvc.data.pipeline import PipelineSpec, build

    spec = PipelineSpec(cfg.data.image_size, 8, targets={"logits": "label"}, cache=False)
    return next(iter(build(classifier.split_tables(cfg, root)["val"], spec, training=False)))


def np_hinton(labels, student, teacher, temperature, alpha):
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    hard = -log_softmax(student)[np.arange(len(labels)), labels]
    log_t, log_s = log_softmax(teacher / temperature), log_softmax(student / temperature)
    soft = (np.exp(log_t) * (log_t - log_s)).sum(1)
    return float(np.mean(alpha * hard + (1 - alpha) * temperature**2 * soft))


def test_kd_loss_on_a_batch_is_hintons_formula_with_the_configured_t_and_alpha(smoke):
    _, cfg, _ = smoke
    x, y = val_batch(cfg, squeeze.data_root(cfg))
    trainer, student, teacher = distillation_trainer(cfg, "student_100_kd", 3)
    loss = float(trainer.compute_loss(x, y, training=False))
    s = keras.ops.convert_to_numpy(student(x["image"], training=False)["logits"]).astype("float64")
    t = keras.ops.convert_to_numpy(teacher(x["image"], training=False)["logits"]).astype("float64")
    regularisers = float(sum(keras.ops.convert_to_numpy(v) for v in trainer.losses))  # the model's L2
    expected = np_hinton(y["logits"].numpy(), s, t, cfg.squeeze.temperature, cfg.squeeze.alpha)
    assert (cfg.squeeze.temperature, cfg.squeeze.alpha) == (4.0, 0.1)
    assert loss == pytest.approx(expected + regularisers, rel=1e-4)


def file_hash(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_teacher_is_bit_identical_after_a_student_epoch_of_the_engine(smoke, tmp_path, monkeypatch):
    import dataclasses

    from keras_fgvc.models import build_model
    from keras_fgvc.training.precision import configure

    _, cfg, _ = smoke
    cfg = dataclasses.replace(cfg, runs_root=str(tmp_path))  # train in a copy: the smoke run stays as it was
    shutil.copytree(os.path.join(smoke[1].run_dir, "teacher2"), os.path.join(cfg.run_dir, "teacher2"))
    teacher_file = os.path.join(cfg.run_dir, "teacher2", "best.weights.h5")
    before_file = file_hash(teacher_file)
    loaded, original = [], engine.load_teacher

    def load_and_record(*args):  # the engine's own loader; records the teacher's weights as loaded
        teacher = original(*args)
        loaded.append((teacher, [w.numpy().copy() for w in teacher.weights]))
        return teacher

    monkeypatch.setattr(engine, "load_teacher", load_and_record)
    tables = classifier.split_tables(cfg, squeeze.data_root(cfg))
    stage = next(s for s in cfg.train.stages if s.name == "student_100_kd")
    run = engine.train_stage(cfg, configure(cfg.runtime), stage, lambda c: build_model(c, 3),
                             tables["train"], tables["val"], "label", 3)
    assert run.info["epochs_run"] == 1 and run.info["init_from"] is None
    (teacher, weights_at_load), = loaded
    assert len(weights_at_load) == len(teacher.weights) > 0
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights_at_load, teacher.weights))  # BN statistics too
    assert file_hash(teacher_file) == before_file
    fresh = build_model(engine.stage_config(cfg, stage), 3)
    assert not all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(fresh.trainable_weights, run.model.trainable_weights))


def test_a_user_teacher_file_replaces_the_teacher_stages(smoke, tmp_path):
    from keras_fgvc.models import build_model

    root, cfg, _ = smoke
    teacher = build_model(engine.stage_config(cfg, cfg.train.stages[2]), 3)
    paths = [str(tmp_path / "teacher.keras"), str(tmp_path / "teacher.h5")]
    for path in paths:
        teacher.save(path)
        assert squeeze.teacher_logits_size(squeeze.load_user_teacher(path)) == 3
    trained = squeeze.run_stages(compose(overrides(root) + [f"squeeze.teacher={paths[0]}"]))
    assert [s.name for s in trained.train.stages] == STUDENTS
    assert [s.teacher for s in trained.train.stages if s.teacher] == [paths[0]]


def test_teacher_losses_override_is_one_ablation_row(smoke):
    root, _, _ = smoke
    cfg = squeeze.run_stages(compose(overrides(root) + ["squeeze.teacher_losses=[center]", "squeeze.students=[]"]))
    stages = {s.name: s for s in cfg.train.stages}
    assert list(stages) == TEACHERS
    assert [t.name for t in stages["teacher1"].losses["pre_logits"]] == ["center"]
    assert [t.name for t in stages["teacher2"].losses["logits"]] == ["sparse_ce"]  # hard mining off: its base loss
    assert "embedding" not in stages["teacher2"].losses


def test_students_picks_the_student_stages_by_backbone():
    default = squeeze.run_stages(compose(["pipeline=squeeze"]))
    assert [s.name for s in default.train.stages] == TEACHERS + EVERY_STUDENT
    wide = squeeze.run_stages(compose(["pipeline=squeeze", "squeeze.students=[squeezenext_23v5_200]"]))
    assert [s.name for s in wide.train.stages] == TEACHERS + EVERY_STUDENT[2:]


@pytest.mark.parametrize("override", ["squeeze.teacher_losses=[centre]", "squeeze.alpha=1.5", "squeeze.temperature=0",
                                      "squeeze.teacher=teacher9", "squeeze.teacher=missing.keras", "squeeze.bogus=1"])
def test_a_wrong_squeeze_value_is_a_config_error(smoke, override):
    root, _, _ = smoke
    with pytest.raises(ConfigError):
        compose(overrides(root) + [override])


def test_an_unloadable_teacher_file_is_a_user_error_before_anything_is_written(tmp_path):
    bad = tmp_path / "teacher.keras"
    bad.write_text("not a model")
    cfg = compose(overrides(tmp_path) + [f"squeeze.teacher={bad}"])  # it exists: compose accepts it
    with pytest.raises(UserError, match="config key 'squeeze.teacher': cannot load"):
        squeeze.run(cfg)  # run.py prints a UserError as one "error:" line and exits 2
    assert not (tmp_path / "runs").exists() and not (tmp_path / "demo").exists()
    with pytest.raises(UserError, match="model file"):
        squeeze.load_user_teacher(str(tmp_path / "teacher.txt"))
    with pytest.raises(UserError, match="'squeeze.students': 'resnet50' is no student stage's backbone"):
        squeeze.run(compose(overrides(tmp_path) + ["squeeze.students=[resnet50]"]))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "demo").exists()
    with pytest.raises(UserError, match="timing_batches"):
        squeeze.run(compose(overrides(tmp_path) + ["squeeze.timing_batches=[0]"]))


def test_the_run_report_shows_every_stage_and_the_comparison(smoke):
    from tests.tracking.report_checks import check_report

    _, cfg, _ = smoke
    page = check_report(cfg.run_dir, TEACHERS + STUDENTS)
    assert ("h3", "comparison (comparison.md)") in page.headings
