"""The run report on a hand-made run folder: what it reads, what it counts and what it refuses."""

import importlib
import json
import shutil

import keras
import pandas as pd
import pytest
import yaml

from keras_fgvc.config.validate import to_config, to_dict
from keras_fgvc.models import build_model
from keras_fgvc.tracking.report import scalars, stored_values, write_report
from keras_fgvc.tracking.run_dir import write_config, write_json
from tests.tracking.report_checks import check_model_cards, check_report

# The module, not the function keras_fgvc.export re-exports under the same name.
model_card_module = importlib.import_module("keras_fgvc.export.model_card")


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "cars" / "a"
    (run / "s").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"pipeline": "cars", "name": "a",
                                                     "train": {"stages": [{"name": "s"}]}}))
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.BatchNormalization()(inputs)))
    model.save_weights(str(run / "s" / "best.weights.h5"))
    pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.4, 0.6],
                  "val_accuracy": [0.3, 0.55]}).to_csv(run / "s" / "history.csv", index=False)
    (run / "metrics.json").write_text(json.dumps({"s": {"val": {"top1": 0.55, "rows": 20}, "epochs_run": 2},
                                                  "test_top1": 0.5}))
    (run / "bad_files.txt").write_text("/data/x.jpg\tempty file\n")
    return run, model


def test_a_report_from_the_run_folder_alone(run_dir):
    run, model = run_dir
    _, md_path = write_report(str(run), "python run.py pipeline=cars name=a", 12.5)
    page = check_report(run, ["s"], command_has="pipeline=cars name=a", cards=False)
    model_table = next(table for table in page.tables if table[0][:2] == ["stage", "params"])
    # no params in metrics.json: counted in the weights file (BatchNorm's 4 x 4 statistics included)
    assert model_table[1][1] == f"{model.count_params():,}" == f"{4 * 4 + 4 * 3 + 3:,}"
    # a hand-made model, not one build_model makes: no card, and the reason instead of a crash
    assert model_table[0][-1] == "model card"
    assert model_table[1][-1] == "not measured: no config.yaml in the stage folder"
    with open(md_path) as f:
        markdown = f.read()
    assert "- `/data/x.jpg`: empty file" in markdown and "wall time: 12.5 s" in markdown
    assert "| test_top1 | 0.5000 |" in markdown
    assert (run / "plots" / "curves_s.png").is_file() and (run / "command.txt").read_text() == \
        "python run.py pipeline=cars name=a\n"


def test_stored_values_count_every_array_of_the_weights_file(run_dir):
    run, model = run_dir
    assert stored_values(str(run / "s" / "best.weights.h5")) == model.count_params()


def test_scalars_keep_numbers_two_levels_down():
    assert scalars({"a": {"b": 1, "c": {"d": 2}, "e": "x"}, "f": 0.5, "g": True, "h": None, "i": [1]}) == {
        "a.b": 1, "f": 0.5}


def test_a_run_without_config_and_with_a_comparison_keeps_the_sections(run_dir):
    run, _ = run_dir
    (run / "config.yaml").unlink()  # an ensemble run writes none
    (run / "comparison.md").write_text("# Squeeze report\n\n## Teacher ablation\n\n| a |\n|---|\n| 1 |\n")
    _, md_path = write_report(str(run))
    with open(md_path) as f:
        markdown = f.read()
    assert "#### Teacher ablation" in markdown and "# no config.yaml in this run folder" in markdown
    check_report(run, ["s"], command_has="not recorded", cards=False)


CLASSES = 5


@pytest.fixture(scope="module")
def built_template(tmp_path_factory):
    """A run folder as the engine leaves it for one stage of a build_model model: the stage's
    config.yaml, best weights and finished.json (with the class count). Built once (building is
    the slow part); each test gets a copy."""
    run = tmp_path_factory.mktemp("template") / "runs" / "cars" / "card"
    stage = run / "s"
    stage.mkdir(parents=True)
    cfg = to_config({"pipeline": "cars", "name": "card", "data": {"image_size": 32},
                     "model": {"backbone": "ghostnet_050"}, "train": {"stages": [{"name": "s"}]}})
    write_config(str(run), to_dict(cfg))
    write_config(str(stage), {**to_dict(cfg), "stage": "s"})
    model = build_model(cfg, CLASSES)
    model.save_weights(str(stage / "best.weights.h5"))
    pd.DataFrame({"epoch": [0], "loss": [1.0], "val_loss": [1.1]}).to_csv(stage / "history.csv", index=False)
    write_json(str(stage / "finished.json"), {"info": {"num_classes": CLASSES, "epochs_run": 1}, "history": {}})
    (run / "metrics.json").write_text(json.dumps({"s": {"val": {"top1": 0.4}, "epochs_run": 1}}))
    return run, model


@pytest.fixture
def built_run(built_template, tmp_path):
    template, model = built_template
    run = tmp_path / "runs" / "cars" / "card"
    shutil.copytree(template, run)
    return run, model


def test_the_model_section_shows_the_model_card_of_each_stage(built_run):
    run, model = built_run
    _, md_path = write_report(str(run))
    page = check_report(run, ["s"], command_has="not recorded")
    row = check_model_cards(run, page, ["s"])["s"]
    expected = model_card_module.model_card(model, (32, 32), batch_sizes=())
    assert row["MACs"] == f"{expected['macs']:,}" and row["input"] == "32x32x3"
    assert row["params"] == f"{expected['total_params']:,}"
    with open(run / "s" / "model_card.json") as f:
        kept = json.load(f)
    assert {k: kept["card"][k] for k in ("macs", "total_params", "trainable_params")} == {
        k: expected[k] for k in ("macs", "total_params", "trainable_params")}
    assert list(kept["card"]["images_per_second"]) == ["1"] and kept["policy"] == "float32"
    with open(md_path) as f:
        markdown = f.read()
    assert f"| {row['MACs']} | {row['images/s @1']} |" in markdown
    assert "images/s: batch 1, timed 0.25 s after warm-up" in markdown


def test_a_kept_card_is_reused_until_the_weights_change(built_run, monkeypatch):
    run, model = built_run
    write_report(str(run))
    first = check_model_cards(run, check_report(run, ["s"], command_has="not recorded"), ["s"])["s"]

    def fail(*args, **kwargs):
        raise RuntimeError("measured again")

    monkeypatch.setattr(model_card_module, "model_card", fail)
    write_report(str(run))
    assert check_model_cards(run, check_report(run, ["s"], command_has="not recorded"), ["s"])["s"] == first
    model.save_weights(str(run / "s" / "best.weights.h5"))  # a new best epoch
    write_report(str(run))
    page = check_report(run, ["s"], command_has="not recorded", cards=False)
    table = next(table for table in page.tables if table[0][:2] == ["stage", "params"])
    assert table[1][-1] == "not measured: rebuilding the model failed: RuntimeError: measured again"


def test_a_stage_that_cannot_be_rebuilt_says_why(built_run):
    run, _ = built_run
    stage = run / "s"
    config = yaml.safe_load((stage / "config.yaml").read_text())
    hub = {**config, "model": {**config["model"], "backbone": "hub", "hub_handle": "/models/b3_21k"}}
    reasons = {}
    for case, change in (("hub", lambda: write_config(str(stage), hub)),
                         ("other classes", lambda: write_json(str(stage / "finished.json"),
                                                              {"info": {"num_classes": CLASSES + 1}})),
                         ("no classes", lambda: write_json(str(stage / "finished.json"), {"info": {}}))):
        change()
        write_report(str(run))
        table = next(t for t in check_report(run, ["s"], command_has="not recorded", cards=False).tables
                     if t[0][:2] == ["stage", "params"])
        assert "MACs" not in table[0]
        reasons[case] = table[1][-1]
        write_config(str(stage), config)
    assert reasons["hub"] == ("not measured: TF-Hub backbone (/models/b3_21k): the report does not load the module "
                              "again; task=model_card measures it")
    assert reasons["other classes"].startswith("not measured: the model rebuilt from config.yaml does not match "
                                               "best.weights.h5")
    assert reasons["no classes"] == ("not measured: finished.json records no num_classes (the stage was trained by "
                                     "an earlier keras_fgvc)")
