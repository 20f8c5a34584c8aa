"""pipeline=cars end to end: a 2-job smoke sweep through ``run.py -m`` in a subprocess, then
``task=compare`` over it. One sweep serves every assertion (tracing dominates small runs)."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from keras_fgvc.config.schema import IMAGENET_MEAN
from tests.pipelines.cli import run_cli
from keras_fgvc.data.sources import stanford_cars

DROPOUTS = ("0.1", "0.3")  # two jobs show a sweep as well as three (each job costs ~50 s)



@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("cars")
    done, seconds = run_cli("-m", "pipeline=cars", "smoke=true", f"model.dropout={','.join(DROPOUTS)}",
                            f"runs_root={root}/runs", f"export.dir={root}/saved", f"data.demo_root={root}/demo", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [root / "runs" / "cars" / f"smoke-model.dropout={d}" for d in DROPOUTS]
    print(f"cars smoke sweep: {len(DROPOUTS)} runs in {seconds:.0f} s")
    return root, runs, done.stdout


def test_each_sweep_job_has_its_own_run_folder_with_its_value(sweep):
    _, runs, stdout = sweep
    for run, dropout in zip(runs, DROPOUTS):
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["dropout"] == float(dropout)
        assert config["name"] == f"smoke-model.dropout={dropout}"
    assert stdout.count("[") >= 2 and "[2/2]" in stdout


def test_reported_test_top1_matches_predictions_and_the_source_labels(sweep):
    root, runs, _ = sweep
    demo = next((root / "demo").iterdir())
    test = stanford_cars.load(str(demo), "test")
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        predictions = pd.read_csv(run / "train" / "predictions.csv", dtype={"image_id": str})
        assert len(predictions) == len(test) == metrics["data"]["test"]
        classes = json.loads((run / "train" / "classes.json").read_text())
        truth = test.set_index("image_id").loc[predictions["image_id"].astype(str), "label"].to_numpy()
        predicted = predictions["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()
        assert metrics["test_top1"] == pytest.approx(float(np.mean(predicted == truth)))
        probabilities = predictions[[f"p_{name}" for name in classes]].to_numpy()
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
        assert metrics["train"]["epochs_run"] == 1 and metrics["params"] > 0


def test_train_set_normalisation_is_measured_and_recorded(sweep):
    _, runs, _ = sweep
    means = [yaml.safe_load((run / "config.yaml").read_text())["model"]["mean"] for run in runs]
    assert means[0] == means[1]  # the same train rows, read from the cache
    assert len(means[0]) == 3 and not np.allclose(means[0], IMAGENET_MEAN, atol=1e-3)
    assert all(0.0 < m < 1.0 for m in means[0])


def test_export_holds_the_class_names(sweep):
    root, runs, _ = sweep
    for run in runs:  # each sweep job exports under its own name
        model = tf.saved_model.load(str(root / "saved" / "cars" / run.name / "train"))
        assert "serving_default" in model.signatures
    classes = json.loads((runs[0] / "train" / "classes.json").read_text())
    assert len(classes) == 4 and all(isinstance(c, str) for c in classes)


def test_compare_over_the_sweep_lists_the_swept_key_only(sweep):
    root, runs, _ = sweep
    done, _ = run_cli("task=compare", *map(str, runs), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(root / "runs" / "cars" / "compare.csv")
    assert sorted(table["run"]) == sorted(run.name for run in runs)
    assert "model.dropout" in table.columns
    assert not [c for c in table.columns if c.startswith(("model.", "train.", "data.")) and c != "model.dropout"]
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        row = table[table["run"] == run.name].iloc[0]
        assert row["test_top1"] == pytest.approx(metrics["test_top1"])
        assert row["params"] == metrics["params"]
    assert (root / "runs" / "cars" / "compare_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| run |" in done.stdout
    from tests.tracking.report_checks import check_compare_page

    page = check_compare_page(root / "runs" / "cars")
    assert sorted(row[0] for row in page.tables[0][1:]) == sorted(run.name for run in runs)


def test_each_sweep_job_has_its_run_report(sweep):
    from tests.tracking.report_checks import check_report

    _, runs, _ = sweep
    for run, dropout in zip(runs, DROPOUTS):
        check_report(run, ["train"], command_has=f"model.dropout={','.join(DROPOUTS)}")
