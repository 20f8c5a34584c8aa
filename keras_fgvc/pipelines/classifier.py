"""Single-label classification through the engine: the flow of every pipeline whose system adds
only its data and its recipe (``pipeline=cars``; a driver passes its data root).

    tables    train / val / test: the data set's own splits where it ships them
              (``sources.has_split``), otherwise stratified fractions of train
              (``data.val_fraction``, ``data.test_fraction``)
    stages    ``train.stages`` through the engine (training/stages.py); ``model.input_scale=dataset``
              is measured on the training rows first (data/normalization.py)
    evaluate  each stage's best weights: top-1 / top-5 on val and test, the most confused class
              pairs and a confusion plot of the classes in them, ``predictions.csv`` for the test rows
              (every one: a test image that cannot be read gets the prior, the class frequencies of
              the training rows, and is scored nowhere)
    export    each stage's SavedModel (+ TFLite) with its class mapping

Run folder: ``config.yaml`` (with measured mean/std), ``metrics.json`` (per stage, and the last
stage's ``test_top1``, ``params``, ``wall_seconds`` at the top level: what ``task=compare``
reads), ``<stage>/`` (the engine's files, ``classes.json``, ``confusion.png``, ``predictions.csv``).
"""

import os
import time

import numpy as np
import pandas as pd

from keras_fgvc.data import classes as class_mapping
from keras_fgvc.data.prepare import (
    class_prior,
    limit_rows,
    source_table,
    submission_rows,
)
from keras_fgvc.data.sources import has_split
from keras_fgvc.data.splits import stratified_split
from keras_fgvc.errors import DataError
from keras_fgvc.tracking import run_dir as rundir

LABEL = "label"
CONFUSED_PAIRS = 10  # class pairs listed in metrics.json and plotted


def split_tables(cfg, root: str) -> dict[str, pd.DataFrame]:
    """``{"train", "val", "test"}`` Tables: the data set's own splits, else stratified from train.

    A split carved from train takes ``data.test_fraction`` first, then ``data.val_fraction`` of
    the rest, per class (``splits.stratified_split``, seeded by ``seed``).
    """
    train = source_table(cfg, root)
    _check_labels(train, "train", root)
    classes = class_mapping.of_table(train)
    tables = {}
    for split, fraction in (("test", cfg.data.test_fraction), ("val", cfg.data.val_fraction)):
        if has_split(cfg.data.format, root, split):
            tables[split] = source_table(cfg, root, split)
            # A challenge's test split may ship without labels (VIPriors): predicted, not scored.
            _check_labels(tables[split], split, root, unlabelled_ok=split == "test")
            continue
        keep, carved = stratified_split(train[LABEL].to_numpy(), fraction, cfg.seed)
        tables[split] = train.iloc[carved].reset_index(drop=True)
        train = train.iloc[keep].reset_index(drop=True)
    tables["train"] = train
    for table in tables.values():  # every split shares train's mapping (sources give it to each)
        table.attrs["classes"] = classes
    return limit_rows(cfg, tables)


def is_labelled(table) -> bool:
    """Whether a split's rows carry labels (a checked split has all or none)."""
    return LABEL in table.columns and not table[LABEL].isna().all()


def _check_labels(table, split: str, root: str, unlabelled_ok: bool = False):
    if LABEL not in table.columns:
        raise DataError(f"{root}: the {split} split has no '{LABEL}' column (a classification data set needs one)")
    if unlabelled_ok and not is_labelled(table):
        return
    if table[LABEL].isna().any():
        row = int(np.flatnonzero(table[LABEL].isna().to_numpy())[0])
        raise DataError(f"{root}: the {split} split has rows without a label (first: row {row}, "
                        f"{table['path'].iloc[row]}); this pipeline trains and scores on labelled rows only")


def num_classes_of(tables) -> int:
    classes = class_mapping.of_table(tables["train"])
    return len(classes) if classes else int(max(t[LABEL].max() for t in tables.values() if len(t))) + 1


def evaluate(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[dict, np.ndarray | None]:
    """Top-1, top-5 and the most confused (true, predicted, count) pairs of one split, and its
    confusion matrix (``({}, None)`` for an empty split)."""
    from keras_fgvc.evaluation.metrics import (
        accuracy,
        confusion_matrix,
        most_confused,
        top_k_accuracy,
    )

    if not len(labels):
        return {}, None
    predicted = probabilities.argmax(1)
    cm = confusion_matrix(labels, predicted, num_classes)
    scores = {"top1": accuracy(labels, predicted), "top5": top_k_accuracy(labels, probabilities, min(5, num_classes)),
              "rows": len(labels), "most_confused": most_confused(cm, CONFUSED_PAIRS)}
    return scores, cm


def confused_classes_plot(cm, pairs, names, path, title: str):
    """The confusion sub-matrix of the classes in ``pairs`` (all of K would be unreadable at K=196)."""
    from keras_fgvc.tracking.plots_confusion import confusion_plot

    picked = sorted({c for true, predicted, _ in pairs for c in (true, predicted)}) or list(range(min(len(cm), 10)))
    confusion_plot(cm[np.ix_(picked, picked)], path, [str(names[c]) for c in picked], title=title)


def run(cfg, root: str) -> dict:
    """Train and evaluate the stages ``cfg.stage`` selects on the data set at ``root``.

    Returns the run-level metrics (also ``<run_dir>/metrics.json``) and prints one line per stage.
    """
    from keras_fgvc.config import to_dict
    from keras_fgvc.data.normalization import with_dataset_statistics
    from keras_fgvc.data.prepare import check_tables, decode_once
    from keras_fgvc.export.stage import check_stage_exports
    from keras_fgvc.training.precision import configure
    from keras_fgvc.training.resume import is_finished
    from keras_fgvc.training.stages import check_can_start, stage_folder, stages_to_run

    started = time.perf_counter()
    stages = stages_to_run(cfg)
    # A stage a resumed run skips keeps its export.
    check_stage_exports(cfg, [s.name for s in stages if not (cfg.resume and is_finished(stage_folder(cfg, s.name)))])
    tables = split_tables(cfg, root)
    check_can_start(cfg, stages)
    plan = configure(cfg.runtime)
    checked, data_info = check_tables(cfg, tables)
    test = submission_rows(tables, checked)  # predictions.csv answers the unreadable test rows too
    tables = {name: table.reset_index(drop=True) for name, table in checked.items()}  # bad images dropped
    for table in tables.values():
        decode_once(cfg, table)
    num_classes = num_classes_of(tables)
    cfg = with_dataset_statistics(cfg, tables["train"])
    rundir.write_config(cfg.run_dir, to_dict(cfg))
    names = class_mapping.of_table(tables["train"]) or list(range(num_classes))
    data_info.update({split: len(table) for split, table in tables.items()}, classes=num_classes)
    if data_info.get("test_unreadable"):
        prior = prior_probabilities(tables["train"], num_classes)
        print(f"test: {data_info['test_unreadable']} unreadable images get the prior in predictions.csv (the "
              f"training rows' class frequencies; most frequent: '{names[int(prior.argmax())]}', {prior.max():.3f})")
    results = {}
    for stage in stages:
        results[stage.name] = run_stage(cfg, plan, stage, tables, num_classes, names, test)
        print(f"stage '{stage.name}': val top-1 {_fmt(results[stage.name], 'val')}, "
              f"test top-1 {_fmt(results[stage.name], 'test')} ({results[stage.name]['epochs_run']} epochs)")
    last = results[stages[-1].name]
    # Merged into the run's metrics.json: stages run one at a time (stage=X) keep their numbers.
    return rundir.merge_json(os.path.join(cfg.run_dir, "metrics.json"), {
        **results, "data": data_info, "test_top1": last.get("test", {}).get("top1"),
        "test_top5": last.get("test", {}).get("top5"), "val_top1": last.get("val", {}).get("top1"),
        "params": last["params"], "wall_seconds": round(time.perf_counter() - started, 1)})


def row_ids(table) -> pd.Series:
    """The id of each row in a prediction file: ``image_id`` where the source gives one, else the file name."""
    return table["image_id"] if "image_id" in table.columns else table["path"].map(os.path.basename)


def prior_probabilities(train, num_classes: int) -> np.ndarray:
    """The answer for a test image that cannot be read: each class's frequency among the training
    rows (the model's own base rates; its argmax, the most frequent class, lowest index on ties, is
    the likeliest label when test images come from the classes as the training ones do)."""
    return class_prior(train[LABEL], num_classes)


def _fmt(metrics, split):
    value = metrics.get(split, {}).get("top1")
    return "-" if value is None else f"{value:.4f}"


def run_stage(cfg, plan, stage, tables, num_classes: int, names, test=None) -> dict:
    """Train one stage, evaluate its best weights on val and test, write its files; ``test``
    (``prepare.SubmissionRows``, default: ``tables["test"]`` all readable) gives predictions.csv's rows."""
    from keras_fgvc.config import to_dict
    from keras_fgvc.evaluation.predict import predict_probabilities
    from keras_fgvc.export.stage import export_stage
    from keras_fgvc.export.submission import write_predictions_csv
    from keras_fgvc.models import build_model
    from keras_fgvc.tracking.wandb_run import attach_figures, start
    from keras_fgvc.training.stages import train_stage

    started = time.perf_counter()
    wandb_run = start(cfg.tracking, cfg.run_dir, f"{cfg.name}-{stage.name}", {**to_dict(cfg), "stage": stage.name})
    try:
        trained = train_stage(cfg, plan, stage, lambda stage_cfg: build_model(stage_cfg, num_classes),
                              tables["train"], tables["val"], LABEL, num_classes, wandb_run=wandb_run)
        metrics = {"epochs_run": trained.info["epochs_run"], "best_epoch": trained.info["best_epoch"],
                   "monitor": trained.info["monitor"], "best_value": trained.info["best_value"],
                   "params": int(trained.model.count_params())}
        if "stopped_on_nan" in trained.info:
            metrics["stopped_on_nan"] = trained.info["stopped_on_nan"]
        probabilities = {}
        for split in ("val", "test"):
            rows = tables[split]
            probabilities[split] = predict_probabilities(
                trained.model, rows, cfg.data.image_size, max(cfg.data.batch_size, 64),
                channels=cfg.model.img_channels, resize=cfg.data.resize, cache=cfg.data.cache,
                cache_dir=cfg.data.cache_dir)
            if not is_labelled(rows):
                metrics[split] = {"rows": len(rows), "labelled": False}
                continue
            scores, cm = evaluate(probabilities[split], rows[LABEL].to_numpy().astype(int), num_classes)
            if cm is not None and split == "test":
                confused_classes_plot(cm, scores["most_confused"], names, os.path.join(trained.folder, "confusion.png"),
                                      f"{stage.name}: most confused classes (test)")
            metrics[split] = scores
        if wandb_run is not None:
            wandb_run.summary.update({f"{split}_{key}": value for split in ("val", "test")
                                      for key, value in metrics[split].items() if key in ("top1", "top5")})
            attach_figures(wandb_run, cfg.run_dir, stage.name)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    class_mapping.save(names, trained.folder)
    if test is None:
        test = submission_rows(tables, tables)
    if len(test.table):
        prior = prior_probabilities(tables["train"], num_classes)
        write_predictions_csv(os.path.join(trained.folder, "predictions.csv"), row_ids(test.table),
                              test.answers(probabilities["test"], prior), class_names=names, id_column="image_id")
        metrics["test_unreadable"] = int((~test.readable).sum())
        if metrics["test_unreadable"]:
            metrics["test_prior"] = str(names[int(prior.argmax())])
    if cfg.export.enabled and not trained.info.get("already_finished"):
        metrics["export"] = export_stage(cfg, trained.model, stage.name, tables["train"], tables["val"],
                                         tables["val"][LABEL].to_numpy().astype(int), classes=names)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)  # training, evaluation and export
    rundir.write_json(os.path.join(trained.folder, "metrics.json"), metrics)
    return metrics
