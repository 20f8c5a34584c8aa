"""task=compare: the table, files and plot built from fake run folders (no training)."""

import json
import os
import re
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from keras_fgvc.errors import UserError
from keras_fgvc.pipelines import compare as compare_task
from keras_fgvc.tracking.compare import (
    compare,
    differing_keys,
    flatten_config,
    format_seconds,
    read_run,
)
from tests.tracking.report_checks import check_compare_page

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root, name, dropout=0.1, val_loss=(0.9, 0.6, 0.7), stages=("train",), finished=True,
             metrics=None, monitor="val_loss"):
    """A run folder as the training engine writes it; the last stage gets ``val_loss``."""
    run = root / name
    config = {"pipeline": "fivek", "name": name, "seed": 0, "runs_root": str(root), "data": {"image_size": 64},
              "model": {"backbone": "ghostnet_050", "dropout": dropout},
              "train": {"learning_rate": 0.05, "monitor": monitor,
                        "stages": [{"name": s, "epochs": 3, "train": {}} for s in stages]}}
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    for stage in stages:
        # Earlier stages get a much better val_loss: only the last stage must count.
        losses = list(val_loss) if stage == stages[-1] else [0.01] * 5
        accuracy = [0.5 + 0.1 * i for i in range(len(losses))]
        (run / stage).mkdir()
        pd.DataFrame({"epoch": range(len(losses)), "accuracy": accuracy, "loss": losses,
                      "val_accuracy": accuracy, "val_loss": losses}).to_csv(run / stage / "history.csv", index=False)
        if finished:
            column = losses if monitor == "val_loss" else accuracy
            best = min(range(len(column)), key=column.__getitem__) if monitor == "val_loss" else \
                max(range(len(column)), key=column.__getitem__)
            info = {"epochs_run": len(losses), "best_epoch": best, "monitor": monitor,
                    "monitor_mode": "min" if monitor == "val_loss" else "max", "best_value": column[best]}
            (run / stage / "finished.json").write_text(json.dumps({"info": info, "history": {}}))
    return str(run)


@pytest.fixture
def three_runs(tmp_path):
    return [
        make_run(tmp_path, "d1", 0.1, (0.9, 0.5, 0.6), metrics={"test_top1": 0.81, "params": 123456,
                                                                 "wall_seconds": 83.4}),
        make_run(tmp_path, "d2", 0.2, (0.8, 0.3, 0.4), metrics={"test_top1": 0.88, "params": 123456}),
        make_run(tmp_path, "d3", 0.3, (0.7, 0.4, 0.45, 0.42), metrics={"params": 123456, "wall_seconds": 3725}),
    ]


def test_flatten_and_differing_keys_ignore_bookkeeping():
    flat = flatten_config({"train": {"stages": [{"epochs": 3}], "milestones": []}, "seed": 1})
    assert flat == {"train.stages.0.epochs": 3, "train.milestones": [], "seed": 1}
    configs = [{"name": "a", "runs_root": "x", "compare.out": "o", "seed": 1, "lr": 0.1},
               {"name": "b", "runs_root": "y", "compare.out": "p", "seed": 1, "lr": 0.1, "extra": 2}]
    assert differing_keys(configs) == ["extra"]
    assert [format_seconds(s) for s in (None, 7, 83.4, 3725)] == ["-", "7s", "1m 23s", "1h 2m 5s"]


def test_table_rows_files_and_plot(three_runs, tmp_path, capsys):
    result = compare(three_runs)
    assert result["differing"] == ["model.dropout"]
    rows = result["rows"]
    assert [r["run"] for r in rows] == ["d2", "d3", "d1"]  # best val_loss 0.3 < 0.4 < 0.5
    assert [r["model.dropout"] for r in rows] == [0.2, 0.3, 0.1]
    assert [r["best val_loss"] for r in rows] == [0.3, 0.4, 0.5]
    assert [r["val_accuracy"] for r in rows] == pytest.approx([0.6, 0.6, 0.6])  # at the best epoch (1)
    assert [r["test_top1"] for r in rows] == [0.88, None, 0.81]
    assert [r["epochs"] for r in rows] == [3, 4, 3]
    assert [r["params"] for r in rows] == [123456] * 3
    assert all(r["finished"] for r in rows)

    files = result["files"]
    assert files == {"md": str(tmp_path / "compare.md"), "csv": str(tmp_path / "compare.csv"),
                     "png": str(tmp_path / "compare_curves.png"),
                     "html": str(tmp_path / "compare.html")}  # default: the runs' common parent
    printed = capsys.readouterr().out
    assert "| run | model.dropout | best val_loss | val_accuracy | test_top1 | epochs | params | time |" in printed
    assert "| d1 | 0.1 | 0.5 | 0.6 | 0.81 | 3 | 123456 | 1m 23s |" in printed
    assert "| d3 | 0.3 | 0.4 | 0.6 | - | 4 | 123456 | 1h 2m 5s |" in printed
    with open(files["md"]) as f:
        markdown = f.read()
    assert printed.strip() in markdown and f"- d2: {three_runs[1]}" in markdown

    table = pd.read_csv(files["csv"])
    assert table["run"].tolist() == ["d2", "d3", "d1"]
    assert table["model.dropout"].tolist() == [0.2, 0.3, 0.1]
    assert table["best val_loss"].tolist() == [0.3, 0.4, 0.5]
    assert table["epochs"].tolist() == [3, 4, 3]
    assert table["test_top1"].fillna(-1).tolist() == [0.88, -1, 0.81]
    assert table["wall_seconds"].fillna(-1).tolist() == [-1, 3725, 83.4]

    with open(files["png"], "rb") as f:
        assert f.read(8) == PNG_MAGIC
    page = check_compare_page(tmp_path)
    d1 = next(row for row in page.tables[0] if row[0] == "d1")
    assert d1[:8] == ["d1", "0.1000", "0.5000", "0.6000", "0.8100", "3", "123,456", "83.4000"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_unfinished_run_is_listed_from_its_history(three_runs, tmp_path, capsys):
    killed = make_run(tmp_path, "killed", 0.5, (0.6, 0.35), finished=False)
    not_started = make_run(tmp_path, "not_started", 0.6)
    shutil.rmtree(os.path.join(not_started, "train"))  # killed before its first epoch ended
    result = compare([not_started, killed] + three_runs, str(tmp_path / "out"))
    row = next(r for r in result["rows"] if r["run"] == "killed")
    assert (row["finished"], row["best val_loss"], row["epochs"], row["params"]) == (False, 0.35, 2, None)
    assert [r["run"] for r in result["rows"]] == ["d2", "killed", "d3", "d1", "not_started"]
    printed = capsys.readouterr().out
    assert "| killed (unfinished) | 0.5 | 0.35 |" in printed
    assert "| not_started (unfinished) | 0.6 | - | - | - | - | - | - |" in printed
    page = check_compare_page(tmp_path / "out")
    assert page.tables[0][-1][:9] == ["not_started", "0.6000", "-", "-", "-", "-", "-", "-", "-"]


def test_two_stage_run_reports_its_last_stage(tmp_path):
    path = make_run(tmp_path, "fivek", val_loss=(0.7, 0.55), stages=("mask", "distancing", "fivek"))
    summary = read_run(path)
    assert (summary["stage"], summary["best_value"], summary["epochs"]) == ("fivek", 0.55, 2)
    assert summary["curve"] == ("val_loss", [1, 2], [0.7, 0.55])


def test_runs_monitoring_accuracy_sort_descending(tmp_path):
    runs = [make_run(tmp_path, f"r{i}", 0.1 * i, (0.5,) * n, monitor="val_accuracy") for i, n in ((1, 2), (2, 4), (3, 3))]
    rows = compare(runs)["rows"]
    assert [r["run"] for r in rows] == ["r2", "r3", "r1"]
    assert [r["best val_accuracy"] for r in rows] == pytest.approx([0.8, 0.7, 0.6])


def test_different_monitors_are_named_in_their_cells(tmp_path):
    runs = [make_run(tmp_path, "loss", 0.1, (0.9, 0.4)), make_run(tmp_path, "acc", 0.2, (0.9, 0.4), monitor="val_accuracy")]
    rows = compare(runs)["rows"]
    assert sorted(r["best val metric"] for r in rows) == ["val_accuracy=0.6", "val_loss=0.4"]


def test_small_values_keep_their_digits_in_the_page(tmp_path):
    runs = [make_run(tmp_path, "lr_a", 3e-5, (0.9, 0.4)), make_run(tmp_path, "lr_b", 1.5e-4, (0.9, 0.5))]
    compare(runs)
    page = check_compare_page(tmp_path)
    assert [row[:2] for row in page.tables[0][1:]] == [["lr_a", "3e-05"], ["lr_b", "0.00015"]]


def test_pipeline_refuses_a_folder_that_is_not_a_run_and_an_empty_list(three_runs, tmp_path):
    stray = tmp_path / "notes"
    stray.mkdir()
    cfg = SimpleNamespace(compare=SimpleNamespace(runs=three_runs + [str(stray)], out=""))
    with pytest.raises(UserError, match=re.escape(f"'{stray}' is not a run folder: it has no config.yaml")):
        compare_task.run(cfg)
    with pytest.raises(UserError, match="at least one run folder"):
        compare_task.run(SimpleNamespace(compare=SimpleNamespace(runs=[], out="")))
    result = compare_task.run(SimpleNamespace(compare=SimpleNamespace(runs=three_runs, out=str(tmp_path / "o"))))
    assert result["files"]["md"] == str(tmp_path / "o" / "compare.md")
    assert [r["run"] for r in result["rows"]] == ["d2", "d3", "d1"]
