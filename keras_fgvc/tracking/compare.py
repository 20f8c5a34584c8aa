"""Compare run folders side by side: one table of what differs and how it scored, one plot of curves.

The thesis read this from Neptune; here it is read from the run folders the training engine
writes: ``config.yaml`` (the resolved config), ``metrics.json`` (test scores, params, wall time)
and one folder per stage with ``history.csv`` and, once the stage ended, ``finished.json``. A run
is summarised by its last stage, the one whose weights the run's results come from.
"""

import html
import json
import math
import os
import tempfile

import yaml

from keras_fgvc.errors import UserError
from keras_fgvc.tracking.figures import pyplot, save_figure
from keras_fgvc.tracking.html_page import cells, document, html_table, inline_png
from keras_fgvc.tracking.run_dir import atomic_write_text

# Keys (and groups, as prefixes) that name, place or launch a run rather than change what it
# learns: they differ between any two runs, so as columns they would only hide the real differences.
BOOKKEEPING_KEYS = ("name", "task", "stage", "resume", "runs_root", "compare", "tracking", "smoke_settings",
                    "export.dir")
MISSING = "-"


def flatten_config(config, prefix: str = "") -> dict:
    """Nested dicts and lists as ``{dotted.key: leaf}``; list items are keyed by their index.

    Example:
        >>> flatten_config({"model": {"dropout": 0.1}, "train": {"stages": [{"epochs": 3}]}})
        {'model.dropout': 0.1, 'train.stages.0.epochs': 3}
    """
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else None
    if items is None or (prefix and not config):  # a leaf, or an empty group that is a value of its own
        return {prefix: config}
    flat = {}
    for key, value in items:
        flat.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _is_bookkeeping(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in BOOKKEEPING_KEYS)


def differing_keys(flat_configs: list) -> list:
    """Dotted keys whose values are not the same in every config (a key some lack counts), in order.

    Example:
        >>> differing_keys([{"name": "a", "model.dropout": 0.1}, {"name": "b", "model.dropout": 0.2}])
        ['model.dropout']
    """
    keys = list(dict.fromkeys(k for flat in flat_configs for k in flat))
    return [k for k in keys if not _is_bookkeeping(k)
            and any(flat.get(k, MISSING) != flat_configs[0].get(k, MISSING) for flat in flat_configs)]


def stage_order(run_dir: str, config: dict) -> list:
    """Stage folders (those with history.csv) in the order of ``train.stages``; a pretrained recipe's
    ``<stage>_head`` folder comes just before its stage, folders not listed come first, alphabetically."""
    listed = [stage.get("name") for stage in config.get("train", {}).get("stages", []) if isinstance(stage, dict)]

    def position(folder):
        if folder in listed:
            return (1, 2 * listed.index(folder) + 1)
        base = folder.removesuffix("_head")
        return (1, 2 * listed.index(base)) if base != folder and base in listed else (0, folder)

    folders = [f for f in sorted(os.listdir(run_dir)) if os.path.isfile(os.path.join(run_dir, f, "history.csv"))]
    return sorted(folders, key=position)


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _stage_monitor(config: dict, stage: str) -> str:
    """The monitor an unfinished stage was training with: its own train override, else train.monitor."""
    train = config.get("train", {})
    for listed in train.get("stages", []):
        if isinstance(listed, dict) and listed.get("name") == stage.removesuffix("_head"):
            return (listed.get("train") or {}).get("monitor", train.get("monitor", "val_loss"))
    return train.get("monitor", "val_loss")


def _last_stage(run_dir: str, config: dict, stage: str) -> dict:
    """Best value and epoch, epochs, val_accuracy at the best epoch and the validation curve of one
    stage: from finished.json when the stage ended, else from what history.csv holds so far."""
    import pandas as pd

    path = os.path.join(run_dir, stage, "history.csv")
    history = pd.read_csv(path) if os.path.getsize(path) else pd.DataFrame()
    epochs = history["epoch"] if "epoch" in history else pd.Series(range(len(history)), dtype=int)
    info = _read_json(os.path.join(run_dir, stage, "finished.json")).get("info")
    if info:
        found = {"finished": True, "monitor": info.get("monitor"), "monitor_mode": info.get("monitor_mode"),
                 "best_value": info.get("best_value"), "best_epoch": info.get("best_epoch"),
                 "epochs": info.get("epochs_run")}
    else:  # interrupted
        from keras_fgvc.training.callbacks import monitor_mode

        monitor = _stage_monitor(config, stage)
        found = {"finished": False, "monitor": monitor, "monitor_mode": monitor_mode(monitor),
                 "best_value": None, "best_epoch": None, "epochs": len(history)}
        if monitor in history and history[monitor].notna().any():
            column = history[monitor]
            best_row = column.idxmin() if found["monitor_mode"] == "min" else column.idxmax()
            found.update(best_value=float(column[best_row]), best_epoch=int(epochs[best_row]))
    at_best = history[epochs == found["best_epoch"]]
    if "val_accuracy" in history and len(at_best):
        found["val_accuracy"] = float(at_best["val_accuracy"].iloc[0])
    curve = "val_loss" if "val_loss" in history else found["monitor"]
    if curve in history:
        found["curve"] = (curve, [int(e) + 1 for e in epochs], history[curve].astype(float).tolist())
    return found


def read_run(run_dir: str) -> dict:
    """One run's summary, taken from its last stage.

    Args:
        run_dir: a run folder (must hold config.yaml).

    Returns:
        dict with run, path, config (flattened), stage, finished, monitor, monitor_mode, best_value,
        best_epoch (0-based), val_accuracy (at the best epoch), epochs, test_top1, params,
        wall_seconds and curve (``(name, epochs 1-based, values)``); None where unknown.

    Example:
        >>> read_run("runs/fivek/dropout_0.2")["best_value"]  # doctest: +SKIP
        0.41
    """
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config_path):
        raise UserError(f"'{run_dir}' is not a run folder: it has no config.yaml")
    with open(config_path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise UserError(f"'{config_path}' is not a resolved config (a YAML mapping)")
    metrics = _read_json(os.path.join(run_dir, "metrics.json"))
    summary = {"run": os.path.basename(os.path.normpath(run_dir)), "path": run_dir, "config": flatten_config(config),
               "stage": None, "finished": False, "monitor": None, "monitor_mode": None, "best_value": None,
               "best_epoch": None, "val_accuracy": None, "epochs": None, "curve": None,
               **{k: metrics.get(k) for k in ("test_top1", "params", "wall_seconds")}}
    stages = stage_order(run_dir, config)
    if stages:
        summary.update(stage=stages[-1], **_last_stage(run_dir, config, stages[-1]))
    return summary


def _sort_key(summary: dict):
    value = summary["best_value"]
    if value is None or not math.isfinite(value):
        return (1, 0.0)  # no best value yet: after every run that has one
    return (0, value if summary["monitor_mode"] == "min" else -value)


def build_rows(summaries: list, differing: list) -> list:
    """Table rows, best run first: run, each differing key, best monitor value, val_accuracy at the
    best epoch, test_top1, epochs, params, wall_seconds, stage, finished, path (None: unknown).

    The best-value column is ``best <monitor>`` when every run monitors the same metric, else
    ``best val metric`` with ``<monitor>=<value>`` cells.
    """
    monitors = {s["monitor"] for s in summaries if s["monitor"]}
    column = f"best {next(iter(monitors))}" if len(monitors) == 1 else "best val metric"
    rows = []
    for s in sorted(summaries, key=_sort_key):
        best = s["best_value"]
        if len(monitors) > 1 and best is not None:
            best = f"{s['monitor']}={best:.4g}"
        rows.append({"run": s["run"], **{k: s["config"].get(k) for k in differing}, column: best,
                     "val_accuracy": s["val_accuracy"], "test_top1": s["test_top1"], "epochs": s["epochs"],
                     "params": s["params"], "wall_seconds": s["wall_seconds"], "stage": s["stage"],
                     "finished": s["finished"], "path": s["path"]})
    return rows


def format_seconds(seconds) -> str:
    """``83.2`` -> ``"1m 23s"``, ``3725`` -> ``"1h 2m 5s"``; None -> ``"-"``."""
    if seconds is None:
        return MISSING
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = ([f"{hours}h"] if hours else []) + ([f"{minutes}m"] if hours or minutes else [])
    return " ".join(parts + [f"{secs}s"])


def _cell(value) -> str:
    if value is None:
        return MISSING
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _title(rows: list) -> str:
    stages = ", ".join(dict.fromkeys(r["stage"] or "none yet" for r in rows))
    return f"Runs compared on their last stage ({stages}), best first"


def format_markdown(rows: list) -> str:
    """The rows as a Markdown table titled by the stage it reports; unfinished runs are marked."""
    columns = [c for c in rows[0] if c not in ("stage", "finished", "path")]
    lines = [_title(rows), "",
             "| " + " | ".join("time" if c == "wall_seconds" else c for c in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        cells = {**row, "run": row["run"] + ("" if row["finished"] else " (unfinished)"),
                 "wall_seconds": format_seconds(row["wall_seconds"])}
        lines.append("| " + " | ".join(_cell(cells[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(summaries: list, differing: list, path: str) -> str:
    """Every run's validation curve (val_loss, else its monitor) on one axis, written atomically."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for s in summaries:
        if s["curve"]:
            label = " ".join([s["run"]] + [f"{k}={s['config'].get(k)}" for k in differing])
            axis.plot(s["curve"][1], s["curve"][2], marker=".", label=label)
    axis.set_xlabel("epoch")
    axis.xaxis.get_major_locator().set_params(integer=True)  # no epoch 1.25
    axis.set_ylabel(", ".join(sorted({s["curve"][0] for s in summaries if s["curve"]})) or "no validation curve")
    if axis.lines:
        axis.legend(fontsize="small")
    figure.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        save_figure(figure, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def format_html(rows: list, curves_png: str) -> str:
    """compare.html: the rows with every compare.csv column (numbers as in the run reports) and
    the curves plot inline, one self-contained page like report.html."""
    body = [f"<h1>Compare: {len(rows)} run{'s' if len(rows) != 1 else ''}</h1>",
            f"<p>{html.escape(_title(rows))}</p>", html_table(cells(rows, list(rows[0]))),
            "<h2>Validation curves</h2>", inline_png(curves_png, "validation curve of each run's last stage")]
    return document(f"compare: {', '.join(r['run'] for r in rows)}", body)


def compare(run_folders: list, out_dir: str = "") -> dict:
    """Print and write the comparison of ``run_folders``.

    Args:
        run_folders: run folders (each with config.yaml).
        out_dir: where compare.md, compare.csv, compare_curves.png and compare.html go; "" for the
            runs' common parent.

    Returns:
        ``{"rows": [row dicts, best first], "differing": [dotted keys], "files": {"md", "csv", "png", "html"}}``.

    Example:
        >>> compare(["runs/fivek/dropout_0.1", "runs/fivek/dropout_0.3"])["differing"]  # doctest: +SKIP
        ['model.dropout']
    """
    import pandas as pd

    if not run_folders:
        raise UserError("task=compare needs at least one run folder, e.g. runs/fivek/*")
    summaries = [read_run(folder) for folder in run_folders]
    differing = differing_keys([s["config"] for s in summaries])
    rows = build_rows(summaries, differing)
    out_dir = out_dir or os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in run_folders])
    os.makedirs(out_dir, exist_ok=True)
    files = {name: os.path.join(out_dir, f"compare{suffix}")
             for name, suffix in (("md", ".md"), ("csv", ".csv"), ("png", "_curves.png"), ("html", ".html"))}
    table = format_markdown(rows)
    print(table)
    folders = "".join(f"- {row['run']}: {row['path']}\n" for row in rows)
    atomic_write_text(files["md"], f"{table}\n{folders}")
    # convert_dtypes: an int column with blanks (params of an unfinished run) stays ints, not 123456.0
    atomic_write_text(files["csv"], pd.DataFrame(rows).convert_dtypes().to_csv(index=False))
    plot_curves(summaries, differing, files["png"])
    atomic_write_text(files["html"], format_html(rows, files["png"]))
    return {"rows": rows, "differing": differing, "files": files}
