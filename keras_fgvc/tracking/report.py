"""The run report: ``<run_dir>/report.html`` (one self-contained page, images inline, opens without
a network) and its ``report.md`` twin for terminals and GitHub.

Built from the run folder alone, so it works for every pipeline and can be redone at any time
(``task=report``): ``config.yaml``, ``metrics.json`` and each stage's ``metrics.json``,
``history.csv``, ``finished.json`` and weights, the PNGs the drivers wrote (confusion matrices,
retrieval grid, augmentation preview, ...), ``bad_files.txt`` and, for squeeze, ``comparison.md``.
The training curves are drawn here, into ``plots/curves_<stage>.png``.

Sections, in order: command, metrics (run and per stage), training curves, figures, model
(parameters, weights and exported TFLite sizes, MACs and images/s per stage: the model card,
``tracking/stage_card.py``, kept in ``<stage>/model_card.json``), bad files, run (wall time, date,
versions), config.
"""

import datetime
import html
import importlib.metadata
import json
import os
import platform
import re

import yaml

from keras_fgvc.tracking.compare import stage_order
from keras_fgvc.tracking.figures import pyplot, save_figure
from keras_fgvc.tracking.html_page import (
    cells,
    document,
    html_table,
    inline_png,
    markdown_table,
)
from keras_fgvc.tracking.run_dir import atomic_write_text
from keras_fgvc.tracking.stage_card import (
    CARD_FILE,
    TIMED_BATCH,
    TIMED_SECONDS,
    stage_card,
)

SECTIONS = ("Command", "Metrics", "Training curves", "Figures", "Model", "Bad files", "Run", "Config")
COMMAND_FILE = "command.txt"
BAD_FILES_SHOWN = 50
PACKAGES = ("keras_fgvc", "keras", "tensorflow", "numpy", "pandas")
IMAGES_PER_SECOND = f"images/s @{TIMED_BATCH}"


# ------------------------------------------------------------------------------------------ reading
def _json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def scalars(tree, prefix: str = "", depth: int = 2) -> dict:
    """``{dotted.key: number}`` of the numbers in a metrics dict, ``depth`` levels down (lists,
    strings and deeper groups are left to metrics.json).

    Example:
        >>> scalars({"val": {"top1": 0.5, "rows": 8}, "epochs_run": 2, "note": "x"})
        {'val.top1': 0.5, 'val.rows': 8, 'epochs_run': 2}
    """
    found = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            found[name] = value
        elif isinstance(value, dict) and depth > 1:
            found.update(scalars(value, name, depth - 1))
    return found


def _versions() -> dict:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            try:
                found[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                found[package] = "not installed"
    return found


def _figures(run_dir: str, stages: list) -> list:
    """``(title, relative path)`` of the PNGs the run wrote: per stage, then ``plots/`` (curves excepted)."""
    found = []
    for stage in stages:
        folder = os.path.join(run_dir, stage)
        found += [(f"{stage}: {name[:-4].replace('_', ' ')}", os.path.join(stage, name))
                  for name in sorted(os.listdir(folder)) if name.endswith(".png")]
    plots = os.path.join(run_dir, "plots")
    if os.path.isdir(plots):
        found += [(name[:-4].replace("_", " "), os.path.join("plots", name)) for name in sorted(os.listdir(plots))
                  if name.endswith(".png") and not name.startswith("curves_")]
    return found


def stored_values(weights_path: str) -> int:
    """Numbers stored in a Keras ``.weights.h5`` file: the parameters, BatchNorm statistics included."""
    import h5py

    total = 0

    def add(_, item):
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += int(item.size)

    with h5py.File(weights_path, "r") as f:
        f.visititems(add)
    return total


def _megabytes(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _card_columns(record: dict) -> dict:
    """The model-card cells of one stage: input, MACs, images/s; or why they are missing."""
    if "card" not in record:
        return {"model card": f"not measured: {record['not_measured']}"}
    card = record["card"]
    return {"input": "x".join(str(d) for d in card["input_shape"]), "MACs": card["macs"],
            IMAGES_PER_SECOND: f"{card['images_per_second'][str(TIMED_BATCH)]:,.1f}"}


def _model_rows(run_dir: str, stages: list, metrics: dict) -> tuple[list, list]:
    """Per stage: parameters (metrics.json's, else counted in the weights file), best-weights file
    size, the TFLite files its export wrote (10^6 bytes) and its model card (``stage_card``);
    and the lines that say where the cards were measured."""
    rows, measured_on = [], []
    for stage in stages:
        stage_metrics = metrics.get(stage) or _json(os.path.join(run_dir, stage, "metrics.json"))
        weights = os.path.join(run_dir, stage, "best.weights.h5")
        has_weights = os.path.isfile(weights)
        export = stage_metrics.get("export") or {}
        params = stage_metrics.get("params")
        record = stage_card(run_dir, stage)
        if "card" in record:
            measured_on.append(f"{record['card']['device']}, {record['policy']}")
        rows.append({
            "stage": stage,
            "params": params if params is not None else stored_values(weights) if has_weights else None,
            "weights MB": _megabytes(os.path.getsize(weights) / 1e6 if has_weights else None),
            **{f"{key.replace('_', ' ')} MB": _megabytes(value.get("size_mb")) for key, value in sorted(export.items())
               if key.startswith("tflite_") and isinstance(value, dict)},
            **_card_columns(record),
        })
    notes = [(f"MACs: multiply-accumulates per image (convolutions and Dense layers, export/model_card.py); "
              f"images/s: batch {TIMED_BATCH}, timed {TIMED_SECONDS:g} s after warm-up, the model rebuilt from "
              f"<stage>/config.yaml ({CARD_FILE}); measured on {'; '.join(dict.fromkeys(measured_on))}")]
    return rows, notes if measured_on else []


def collect(run_dir: str, command: str | None = None, seconds: float | None = None) -> dict:
    """Everything the report shows, read from ``run_dir`` (curves are drawn into ``plots/``);
    ``seconds``: the wall time of the command that just ran (else metrics.json's, if any)."""
    config_path = os.path.join(run_dir, "config.yaml")
    config_text = "# no config.yaml in this run folder\n"
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config_text = f.read()
    config = yaml.safe_load(config_text) or {}
    metrics = _json(os.path.join(run_dir, "metrics.json"))
    stages = stage_order(run_dir, config)
    stage_metrics = {stage: scalars(metrics.get(stage) or _json(os.path.join(run_dir, stage, "metrics.json")))
                     for stage in stages}
    bad_path = os.path.join(run_dir, "bad_files.txt")
    bad = []
    if os.path.isfile(bad_path):
        with open(bad_path) as f:
            bad = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    if command is None and os.path.isfile(os.path.join(run_dir, COMMAND_FILE)):
        with open(os.path.join(run_dir, COMMAND_FILE)) as f:
            command = f.read().strip()
    comparison = os.path.join(run_dir, "comparison.md")
    model_rows, model_notes = _model_rows(run_dir, stages, metrics)
    return {
        "title": f"{config.get('pipeline', '?')} / {config.get('name', os.path.basename(os.path.normpath(run_dir)))}",
        "run_dir": run_dir, "command": command, "config_text": config_text,
        "run_metrics": scalars({key: value for key, value in metrics.items() if key not in stages}),
        "stage_metrics": stage_metrics,
        "curves": [(stage, draw_curves(run_dir, stage)) for stage in stages],
        "figures": _figures(run_dir, stages),
        "model": model_rows, "model_notes": model_notes,
        "bad_files": bad,
        "comparison": open(comparison).read() if os.path.isfile(comparison) else None,
        "wall_seconds": seconds if seconds is not None else metrics.get("wall_seconds"),
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": _versions(),
    }


def draw_curves(run_dir: str, stage: str) -> str | None:
    """``plots/curves_<stage>.png``: the losses (left) and the other metrics (right) per epoch, train
    solid, validation dashed; returns its path relative to ``run_dir`` (None without a history)."""
    import pandas as pd

    path = os.path.join(run_dir, stage, "history.csv")
    history = pd.read_csv(path) if os.path.isfile(path) and os.path.getsize(path) else pd.DataFrame()
    if history.empty:
        return None
    epochs = (history["epoch"] if "epoch" in history else pd.Series(range(len(history)))) + 1
    columns = [c for c in history.columns if c not in ("epoch", "learning_rate") and history[c].notna().any()]
    losses = [c for c in columns if c.removeprefix("val_") == "loss"]
    others = [c for c in columns if c not in losses and "loss" not in c and not c.startswith(("logits_", "val_logits_"))]
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, names, label in ((axes[0], losses, "loss"), (axes[1], others, "metric")):
        for name in names:
            axis.plot(epochs, history[name], linestyle="--" if name.startswith("val_") else "-", marker=".", label=name)
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)  # no epoch 2.5
        axis.set_ylabel(label)
        if names:
            axis.legend(fontsize=7)
    figure.suptitle(f"stage '{stage}'")
    figure.tight_layout()
    relative = os.path.join("plots", f"curves_{stage}.png")
    save_figure(figure, os.path.join(run_dir, relative))
    return relative


# ------------------------------------------------------------------------------------------ writing
def metric_tables(report: dict) -> list:
    """``(title, cells)`` of the run-level and per-stage metric tables (numbers formatted as shown)."""
    tables = []
    if report["run_metrics"]:
        tables.append(("run", cells([{"metric": k, "value": v} for k, v in report["run_metrics"].items()],
                                     ["metric", "value"])))
    keys = list(dict.fromkeys(k for values in report["stage_metrics"].values() for k in values))
    if keys:
        rows = [{"stage": stage, **values} for stage, values in report["stage_metrics"].items()]
        tables.append(("per stage", cells(rows, ["stage", *keys])))
    return tables


def model_table(report: dict) -> list:
    columns = list(dict.fromkeys(k for row in report["model"] for k in row))
    return cells(report["model"], columns) if report["model"] else []


def _run_lines(report: dict) -> list:
    wall = report["wall_seconds"]
    return [f"wall time: {wall:,.1f} s" if wall is not None else "wall time: not recorded",
            f"report written: {report['written']}",
            "versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())]


def render_markdown(report: dict) -> str:
    parts = [f"# Run report: {report['title']}", f"`{report['run_dir']}`",
             "## Command", f"```\n{report['command'] or 'not recorded'}\n```", "## Metrics"]
    for title, table in metric_tables(report):
        parts += [f"### {title}", markdown_table(table)]
    if report["comparison"]:  # its headings two levels down, under this page's own
        parts += ["### comparison (comparison.md)", re.sub(r"^(#+) ", r"##\1 ", report["comparison"], flags=re.MULTILINE)]
    parts.append("## Training curves")
    parts += [f"![{stage}]({path})" for stage, path in report["curves"] if path]
    parts.append("## Figures")
    parts += [f"![{title}]({path})" for title, path in report["figures"]] or ["none"]
    parts += ["## Model", markdown_table(model_table(report)) or "none", *report["model_notes"], "## Bad files"]
    parts.append("\n".join(f"- `{path}`: {reason}" for path, reason in report["bad_files"][:BAD_FILES_SHOWN])
                 if report["bad_files"] else "none")
    parts += ["## Run", "\n".join(f"- {line}" for line in _run_lines(report)),
              "## Config", f"```yaml\n{report['config_text']}```"]
    return "\n\n".join(parts) + "\n"


def render_html(report: dict) -> str:
    run_dir = report["run_dir"]
    body = [f"<h1>Run report: {html.escape(report['title'])}</h1><p><code>{html.escape(run_dir)}</code></p>",
            f"<h2>Command</h2><pre>{html.escape(report['command'] or 'not recorded')}</pre>", "<h2>Metrics</h2>"]
    for title, table in metric_tables(report):
        body.append(f"<h3>{html.escape(title)}</h3>{html_table(table)}")
    if report["comparison"]:
        body.append(f"<h3>comparison (comparison.md)</h3><pre>{html.escape(report['comparison'])}</pre>")
    body.append("<h2>Training curves</h2>")
    body += [inline_png(os.path.join(run_dir, path), f"stage '{stage}'") for stage, path in report["curves"] if path]
    body.append("<h2>Figures</h2>")
    body += [inline_png(os.path.join(run_dir, path), title) for title, path in report["figures"]] or ["<p>none</p>"]
    body.append(f"<h2>Model</h2>{html_table(model_table(report)) or '<p>none</p>'}"
                + "".join(f"<p>{html.escape(note)}</p>" for note in report["model_notes"]) + "<h2>Bad files</h2>")
    body.append("<ul>" + "".join(f"<li><code>{html.escape(p)}</code>: {html.escape(r)}</li>"
                                 for p, r in report["bad_files"][:BAD_FILES_SHOWN]) + "</ul>"
                if report["bad_files"] else "<p>none</p>")
    body.append("<h2>Run</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in _run_lines(report)) + "</ul>")
    body.append(f"<h2>Config</h2><details><summary>config.yaml</summary><pre>{html.escape(report['config_text'])}"
                "</pre></details>")
    return document(report["title"], body)


def write_report(run_dir: str, command: str | None = None, seconds: float | None = None) -> tuple[str, str]:
    """Write ``report.html`` and ``report.md`` for ``run_dir`` (and ``command.txt`` when given);
    returns their paths."""
    if command:
        atomic_write_text(os.path.join(run_dir, COMMAND_FILE), command + "\n")
    report = collect(run_dir, command, seconds)
    html_path, md_path = os.path.join(run_dir, "report.html"), os.path.join(run_dir, "report.md")
    atomic_write_text(html_path, render_html(report))
    atomic_write_text(md_path, render_markdown(report))
    return html_path, md_path
