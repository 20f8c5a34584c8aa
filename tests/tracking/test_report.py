"""The run report on a hand-made run folder: what it reads, what it counts and what it refuses."""

import json

import keras
import pandas as pd
import pytest
import yaml

from keras_fgvc.tracking.report import scalars, stored_values, write_report
from tests.tracking.report_checks import check_report


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
    page = check_report(run, ["s"], command_has="pipeline=cars name=a")
    model_table = next(table for table in page.tables if table[0][:2] == ["stage", "params"])
    # no params in metrics.json: counted in the weights file (BatchNorm's 4 x 4 statistics included)
    assert model_table[1][1] == f"{model.count_params():,}" == f"{4 * 4 + 4 * 3 + 3:,}"
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
    check_report(run, ["s"], command_has="not recorded")
