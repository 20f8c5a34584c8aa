"""The Squeeze report: one row per model (teacher levels, each student alone and distilled) with its
size, accuracy and speed, and the teacher's ablation table (seed 003's two tables).

Everything is read back from the run folder, so ``stage=report`` redoes it alone:

    <stage>/metrics.json       val / test top-1 and the exports (TFLite sizes)  (pipelines/classifier.py)
    <stage>/best.weights.h5    the float32 weights file (its size is the "size MB" of seed 003's table);
                               loaded into the model rebuilt at the stage's config for params and images/s
    config.yaml, metrics.json  the run's start and its number of classes

Writes ``comparison.md`` (both tables and the distillation gain per student width),
``comparison.csv`` and ``comparison.json`` in the run folder, and prints the tables; the run report
(``report.html`` / ``report.md``, tracking/report.py) shows comparison.md in its metrics section.
"""

import os

import pandas as pd

from keras_fgvc.errors import UserError
from keras_fgvc.tracking.run_dir import read_json

# (key, heading) of the model table, in order; the images/s columns (one per squeeze.timing_batches) follow.
COLUMNS = (
    ("model", "model"), ("role", "role"), ("backbone", "backbone"), ("params", "params"),
    ("weights_mb", "float32 weights MB"), ("tflite_float32_mb", "TFLite float32 MB"),
    ("tflite_int8_mb", "TFLite int8 MB"), ("val_top1", "val top-1"), ("test_top1", "test top-1"),
)
# Ablation columns: seed 003's names -> the registry loss that stands for it.
ABLATION_LOSSES = (("center loss", "center"), ("PLN", "prelogit_norm"), ("HIM", "hard_mining"),
                   ("triplet", "batch_hard_triplet"))


def check_report_inputs(cfg) -> None:
    """UserError naming the first file ``stage=report`` needs and does not find."""
    from keras_fgvc.training.callbacks import BEST

    needed = [os.path.join(cfg.run_dir, "metrics.json")]
    needed += [os.path.join(cfg.run_dir, s.name, f) for s in cfg.train.stages for f in ("metrics.json", BEST)]
    for path in needed:
        if not os.path.isfile(path):
            raise UserError(f"stage=report needs {path}; train the stages first (stage=all)")


def role(cfg, stage) -> str:
    from keras_fgvc.pipelines.squeeze import is_teacher_stage

    if is_teacher_stage(stage):
        return f"teacher ({stage.augment or cfg.augment.preset})"
    if stage.teacher is None:
        return "student alone"
    return f"student distilled (T={cfg.squeeze.temperature:g}, alpha={cfg.squeeze.alpha:g})"


def speed(model, cfg, seconds: float) -> dict:
    """``{"images_per_second_<b>": float}`` of ``model`` at the run's input size on this machine."""
    from keras_fgvc.export.model_card import images_per_second

    shape = (cfg.data.image_size, cfg.data.image_size, cfg.model.img_channels)
    return {f"images_per_second_{b}": images_per_second(model, shape, b, min_seconds=seconds)
            for b in cfg.squeeze.timing_batches}


def columns(cfg) -> list:
    """The model table's (key, heading) pairs for this run's timed batch sizes."""
    timed = [(f"images_per_second_{b}", f"images/s @{b}") for b in cfg.squeeze.timing_batches]
    return [*COLUMNS, *timed, ("wall_seconds", "stage wall s")]


def stage_row(cfg, stage, num_classes: int) -> dict:
    """The report row of a trained stage (its model rebuilt at the stage's config, best weights)."""
    from keras_fgvc.models import build_model
    from keras_fgvc.training.callbacks import BEST
    from keras_fgvc.training.stages import stage_config

    folder = os.path.join(cfg.run_dir, stage.name)
    metrics = read_json(os.path.join(folder, "metrics.json"))
    stage_cfg = stage_config(cfg, stage)
    model = build_model(stage_cfg, num_classes)
    model.load_weights(os.path.join(folder, BEST))
    exports = metrics.get("export", {})
    return {
        "model": stage.name, "role": role(cfg, stage), "backbone": stage_cfg.model.backbone,
        "params": int(model.count_params()), "weights_mb": os.path.getsize(os.path.join(folder, BEST)) / 1e6,
        "tflite_float32_mb": exports.get("tflite_float32", {}).get("size_mb"),
        "tflite_int8_mb": exports.get("tflite_int8", {}).get("size_mb"),
        "val_top1": metrics.get("val", {}).get("top1"), "test_top1": metrics.get("test", {}).get("top1"),
        **speed(model, cfg, cfg.squeeze.timing_seconds), "wall_seconds": metrics.get("wall_seconds"),
    }


def user_teacher_row(cfg, path: str, root: str) -> dict:
    """The row of a user's teacher file: scored on this run's val and test rows."""
    from keras_fgvc.evaluation.predict import predict_probabilities
    from keras_fgvc.pipelines import classifier
    from keras_fgvc.pipelines.squeeze import load_user_teacher

    model = load_user_teacher(path)
    tables = classifier.split_tables(cfg, root)
    scores = {}
    for split in ("val", "test"):
        rows = tables[split]
        probabilities = predict_probabilities(model, rows, cfg.data.image_size, channels=cfg.model.img_channels,
                                              resize=cfg.data.resize, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
        scores[split] = float((probabilities.argmax(1) == rows["label"].to_numpy().astype(int)).mean()) if len(rows) else None
    return {"model": os.path.basename(path), "role": "teacher (file)", "backbone": model.name,
            "params": int(model.count_params()), "weights_mb": os.path.getsize(path) / 1e6,
            "tflite_float32_mb": None, "tflite_int8_mb": None, "val_top1": scores["val"], "test_top1": scores["test"],
            **speed(model, cfg, cfg.squeeze.timing_seconds), "wall_seconds": None}


def distillation_gains(cfg, rows: list[dict]) -> list[dict]:
    """Per student backbone: distilled minus alone, on val and test top-1."""
    by_stage = {s.name: s for s in cfg.train.stages}
    found = {}
    for row in rows:
        stage = by_stage.get(row["model"])
        if stage is not None and row["role"].startswith("student"):
            found.setdefault(row["backbone"], {})["kd" if stage.teacher else "alone"] = row
    gains = []
    for backbone, pair in found.items():
        if {"kd", "alone"} <= set(pair):
            gains.append({"backbone": backbone, "alone": pair["alone"]["model"], "distilled": pair["kd"]["model"],
                          **{f"{split}_gain": _difference(pair["kd"][f"{split}_top1"], pair["alone"][f"{split}_top1"])
                             for split in ("val", "test")}})
    return gains


def _difference(a, b):
    return None if a is None or b is None else a - b


def ablation_rows(cfg, rows: list[dict]) -> list[dict]:
    """Seed 003's ablation columns for each teacher stage of this run, with its scores."""
    from keras_fgvc.pipelines.squeeze import is_teacher_stage

    scores = {row["model"]: row for row in rows}
    table = []
    for stage in (s for s in cfg.train.stages if is_teacher_stage(s)):
        names = {term.name for terms in stage.losses.values() for term in terms}
        table.append({"stage": stage.name, "augmentation": stage.augment or cfg.augment.preset,
                      **{column: loss in names for column, loss in ABLATION_LOSSES},
                      "val_top1": scores[stage.name]["val_top1"], "test_top1": scores[stage.name]["test_top1"]})
    return table


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def markdown_table(rows: list[dict], columns) -> str:
    """A GitHub markdown table of ``rows`` (dicts) over ``columns`` ((key, heading) pairs)."""
    lines = ["| " + " | ".join(heading for _, heading in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def gain_sentences(gains: list[dict]) -> list[str]:
    lines = []
    for gain in gains:
        test, val = gain["test_gain"], gain["val_gain"]
        if test is None:
            continue
        verdict = "beats" if test > 0 else "does not beat"
        lines.append(f"- {gain['backbone']}: distillation {verdict} the student trained alone on test top-1 "
                     f"({test * 100:+.2f} points; val {_points(val)}).")
    return lines


def _points(value) -> str:
    return "-" if value is None else f"{value * 100:+.2f} points"


def write(cfg, root: str) -> dict:
    """Write ``comparison.md`` / ``.csv`` / ``.json`` in the run folder and print the tables.

    Args:
        cfg: the run's Config with the stages it trained (``squeeze.run_stages``).
        root: the data set's root (a user's teacher file is scored on its val and test rows).

    Returns:
        ``{"rows": [...], "ablation": [...], "gains": [...]}``, as comparison.json holds.

    Example:
        >>> write(run_stages(cfg), data_root(cfg))["gains"]  # doctest: +SKIP
        [{'backbone': 'squeezenext_23v5_100', 'val_gain': 0.04, 'test_gain': 0.03, ...}]
    """
    from keras_fgvc.pipelines.squeeze import user_teacher
    from keras_fgvc.tracking.run_dir import atomic_write_text, write_json, write_table

    check_report_inputs(cfg)
    num_classes = int(read_json(os.path.join(cfg.run_dir, "metrics.json"))["data"]["classes"])
    rows = [user_teacher_row(cfg, user_teacher(cfg), root)] if user_teacher(cfg) else []
    rows += [stage_row(cfg, stage, num_classes) for stage in cfg.train.stages]
    report = {"rows": rows, "ablation": ablation_rows(cfg, rows), "gains": distillation_gains(cfg, rows),
              "device": _device(), "image_size": cfg.data.image_size}
    ablation_columns = [("stage", "stage"), ("augmentation", "augmentation"),
                        *[(c, c) for c, _ in ABLATION_LOSSES], ("val_top1", "val top-1"), ("test_top1", "test top-1")]
    text = "\n\n".join(part for part in [
        f"# Squeeze report: {cfg.run_dir}",
        (f"Images/s at {cfg.data.image_size} px on {report['device']}; sizes in 10^6 bytes; wall time per stage "
         "includes its evaluation and export."),
        markdown_table(rows, columns(cfg)),
        "\n".join(gain_sentences(report["gains"])),
        "## Teacher ablation (seed 003)" if report["ablation"] else "",
        markdown_table(report["ablation"], ablation_columns) if report["ablation"] else "",
    ] if part) + "\n"
    atomic_write_text(os.path.join(cfg.run_dir, "comparison.md"), text)
    write_table(os.path.join(cfg.run_dir, "comparison.csv"), pd.DataFrame(rows, columns=[key for key, _ in columns(cfg)]))
    write_json(os.path.join(cfg.run_dir, "comparison.json"), report)
    print(text)
    return report


def _device() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
