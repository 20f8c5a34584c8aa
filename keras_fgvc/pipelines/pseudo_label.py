"""Zalo 5K staged pseudo-labelling (SYSTEMS.md section 5), the default pipeline.

The stages are declared in ``pipelines/fivek.yaml`` and trained by the engine
(``training/stages.py``); each names the label it learns as its ``logits`` target:

    stage mask:        train on rows with a mask label; predict the missing mask labels; accept
                       those with confidence >= threshold; fill 5k where it follows (mask=0 -> 5k=0).
    stage distancing:  the same for distancing on the filled table; 5k = mask AND distancing.
    stage fivek:       train the 5k model on the completed labels; choose its decision threshold on
                       validation for F1, compare it with P(mask) x P(distancing) from the earlier
                       stages (``fivek_decision``), report both on the held-out rows and predict
                       the public test set with the better one on validation. A public-test image
                       that cannot be read still gets its row: P(5k = 1) is 5k's frequency in the
                       stage's training rows, decided at the same threshold.

What is 5K-specific lives here: completing the label table, the 5k rule and the results table.
Each stage reads the previous stage's completed table (``<run_dir>/<previous>/table.csv``, or
``pseudo_label.input_table``) and writes its own, with per-label ``<label>_source`` /
``<label>_confidence`` columns and a ``label_source`` summary (human / pseudo:<conf> / rule).
Two fractions of the fully human-labelled rows are never trained on: ``split == "val"`` (every
stage's validation rows) and ``split == "test"`` (held out for the reported numbers).
"""

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from keras_fgvc.config.schema import register_pipeline_options
from keras_fgvc.data import synthetic
from keras_fgvc.data.prepare import source_table
from keras_fgvc.data.sources import fivek as fivek_source
from keras_fgvc.data.splits import split_rows
from keras_fgvc.errors import DataError, UserError
from keras_fgvc.pipelines import fivek_decision
from keras_fgvc.tracking import run_dir as rundir

NUM_CLASSES = 2


@dataclass
class PseudoLabelConfig:
    # A pseudo label is accepted only when the model's top probability reaches this.
    threshold: float = 0.9
    # Explicit completed table to start a stage from (default: the previous stage's in the run dir).
    input_table: str | None = None
    # "flip": every prediction of a stage (hidden rows, held-out, 5k, public test) averages the
    # softmax of the image and its mirror; "none": one view. Measured on real pictures (README, 5K
    # section): on 10k Fashion-MNIST test images distancing 0.901 -> 0.908, mask 0.962 -> 0.964;
    # on benchmarks/fivek_real.py's hidden rows +0.002 to +0.007 on both data draws.
    tta: str = "flip"


register_pipeline_options("fivek", "pseudo_label", PseudoLabelConfig)


def stage_label(stage) -> str:
    """The 5K label a stage learns: its ``targets.logits`` (mask | distancing | 5k)."""
    label = stage.targets.get("logits")
    if label not in fivek_source.LABELS:
        raise UserError(
            f"fivek stage '{stage.name}': set targets.logits to one of {', '.join(fivek_source.LABELS)} "
            f"(the label the stage learns), got {label!r}"
        )
    return label


def data_root(cfg) -> str:
    """``data.root``, or the demo data set (generated on first use) for these demo settings."""
    demo = cfg.data.demo
    return synthetic.demo_root(
        cfg, f"fivek-n{demo.num_images}-s{demo.image_size}", "train_meta.csv",
        lambda root: synthetic.make("fivek", root, seed=cfg.seed, num_images=demo.num_images,
                                    image_size=demo.image_size, test_images=demo.test_images))


def initial_table(source: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.DataFrame:
    """Source rows + provenance columns + validation and held-out test splits drawn from the
    fully labelled rows (fractions of those rows).

    No stage trains on either split, so every stage validates on the same rows and the 5k
    predictors (the 5k model, and P(mask) x P(distancing) from the earlier stages) are compared
    on rows none of them has seen (``fivek_decision``)."""
    table = source.copy()
    for label in fivek_source.LABELS:
        table[f"{label}_source"] = np.where(table[label].notna(), "human", "missing")
        table[f"{label}_confidence"] = np.nan
    table["split"] = "train"
    complete = np.flatnonzero(table[list(fivek_source.LABELS)].notna().all(axis=1).to_numpy())
    test, val, _ = split_rows(len(complete), [test_fraction, val_fraction], seed)
    table.loc[table.index[complete[test]], "split"] = "test"
    table.loc[table.index[complete[val]], "split"] = "val"
    return table


def fill_5k_by_rule(table: pd.DataFrame) -> int:
    """5k = mask AND distancing wherever that is already decided; returns rows filled."""
    missing = table["5k"].isna()
    zero = (table["mask"] == 0) | (table["distancing"] == 0)
    one = (table["mask"] == 1) & (table["distancing"] == 1)
    fill = missing & (zero | one)
    table.loc[fill, "5k"] = np.where(one[fill], 1.0, 0.0)
    table.loc[fill, "5k_source"] = "rule"
    return int(fill.sum())


def summarize_sources(table: pd.DataFrame) -> pd.Series:
    """One ``label_source`` string per row: "human", or e.g. "mask=pseudo:0.973;5k=rule"."""
    parts = []
    for label in fivek_source.LABELS:
        source, confidence = table[f"{label}_source"], table[f"{label}_confidence"]
        text = np.where(source == "pseudo", label + "=pseudo:" + confidence.map("{:.3f}".format), label + "=" + source)
        parts.append(pd.Series(np.where(source == "human", "", text), index=table.index))
    joined = parts[0].str.cat(parts[1:], sep=";").str.replace(r";{2,}", ";", regex=True).str.strip(";")
    return joined.where(joined != "", "human")


def read_previous_table(cfg, stage) -> pd.DataFrame:
    from keras_fgvc.training.stages import previous_stage, stage_folder

    before = previous_stage(cfg, stage).name
    path = cfg.pseudo_label.input_table or os.path.join(stage_folder(cfg, before), "table.csv")
    if not os.path.isfile(path):
        raise UserError(
            f"stage '{stage.name}' needs the completed table of stage '{before}': {path} not found "
            f"(run stage={before} first, or set pseudo_label.input_table=<path>)"
        )
    table = read_completed_table(path)
    needed = ["path", "split", *fivek_source.LABELS, *(f"{label}_source" for label in fivek_source.LABELS)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataError(f"{path}: not a completed 5K table, missing column(s) {', '.join(missing)}")
    return table


def finished_stage(cfg, stage):
    """With ``resume=true``: ``(completed table, metrics)`` of a stage an earlier run finished
    (``metrics.json``, written last, is its marker), else None."""
    import json

    from keras_fgvc.training.stages import stage_folder

    folder = stage_folder(cfg, stage.name)
    table_path, metrics_path = os.path.join(folder, "table.csv"), os.path.join(folder, "metrics.json")
    if not (cfg.resume and os.path.isfile(metrics_path) and os.path.isfile(table_path)):
        return None
    with open(metrics_path) as f:
        return read_completed_table(table_path), json.load(f)


def write_completed_table(path: str, table: pd.DataFrame):
    """A stage's completed table as CSV, the 0/1 labels written as integers (``1``, not ``1.0``)."""
    labels = [label for label in fivek_source.LABELS if label in table.columns]
    rundir.write_table(path, table.astype({label: "Int64" for label in labels}))


def read_completed_table(path: str) -> pd.DataFrame:
    """``write_completed_table``'s file with the labels as the source gives them (float32, NaN missing)."""
    table = pd.read_csv(path)
    labels = [label for label in fivek_source.LABELS if label in table.columns]
    return table.astype({label: "float32" for label in labels})


def run(cfg) -> dict:
    """Run the stages ``cfg.stage`` selects; returns {stage: metrics} and prints a results table."""
    from keras_fgvc.config import to_dict
    from keras_fgvc.data.prepare import (
        check_tables,
        decode_once,
        limit_rows,
        submission_rows,
    )
    from keras_fgvc.export.stage import check_stage_exports
    from keras_fgvc.training.precision import configure
    from keras_fgvc.training.stages import check_can_start, stages_to_run

    stages = stages_to_run(cfg)
    for stage in stages:
        stage_label(stage)
    # A stage a resumed run skips keeps its export.
    check_stage_exports(cfg, [stage.name for stage in stages if finished_stage(cfg, stage) is None])
    if stages[0].name == cfg.train.stages[0].name:
        root = data_root(cfg)
        table = initial_table(source_table(cfg, root), cfg.data.val_fraction, cfg.data.test_fraction, cfg.seed)
    else:
        table = read_previous_table(cfg, stages[0])
        root = data_root(cfg)
    check_can_start(cfg, stages)
    truth = fivek_source.load_truth(root)
    test_table = source_table(cfg, root, split="test") if os.path.isfile(
        os.path.join(root, fivek_source.META_FILES["test"])
    ) else None
    # data.max_rows (smoke runs): the train/val/test rows keep their shares ("split").
    limited = limit_rows(cfg, {"train": table, "test": test_table}, label="split")
    table, test_table = limited["train"], limited["test"]

    plan = configure(cfg.runtime)
    rundir.write_config(cfg.run_dir, to_dict(cfg))
    checked, data_info = check_tables(cfg, {"train": table, "test": test_table})
    # Zalo scores a row per public-test image: the unreadable ones are kept for the prior's answer.
    test = submission_rows({"test": test_table}, checked)
    table = checked["train"]
    decode_once(cfg, table)
    results = {}
    for stage in stages:
        finished = finished_stage(cfg, stage)
        if finished is not None:  # resume=true: the next stage starts from its completed table
            table, results[stage.name] = finished
            print(f"stage '{stage.name}': finished in an earlier run; its table and metrics are kept")
            continue
        results[stage.name] = run_stage(cfg, plan, stage, table, truth, test if stage_label(stage) == "5k" else None)
    # Merged: stages run one at a time (stage=X) keep the earlier stages' numbers.
    rundir.merge_json(os.path.join(cfg.run_dir, "metrics.json"), {**results, "data": data_info})
    print(format_results(results, plan))
    return results


def fivek_metrics(targets) -> dict:
    """Accuracy and binary F1 of the stage's label (the report's metrics)."""
    import keras

    from keras_fgvc.evaluation.metrics import SparseF1Score

    return {"logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), SparseF1Score(NUM_CLASSES, average="binary")]}


def run_stage(cfg, plan, stage, table, truth, test) -> dict:
    """Train one stage's model, pseudo-label its missing label in ``table`` (in place), save everything;
    with ``test`` (``prepare.SubmissionRows`` of the public test), its submission and predictions."""
    from keras_fgvc.evaluation.metrics import accuracy, confusion_matrix, f1_score
    from keras_fgvc.evaluation.predict import predict_probabilities
    from keras_fgvc.export.stage import export_stage
    from keras_fgvc.models import build_model
    from keras_fgvc.tracking.plots_confusion import confusion_plot
    from keras_fgvc.tracking.wandb_run import attach_figures, start
    from keras_fgvc.training.stages import train_stage

    label = stage_label(stage)
    train_rows = table[(table["split"] == "train") & table[label].notna()]
    val_rows, heldout = table[table["split"] == "val"], table[table["split"] == "test"]
    wandb_run = start(cfg.tracking, cfg.run_dir, f"{cfg.name}-{stage.name}", {"stage": stage.name})
    try:
        trained = train_stage(cfg, plan, stage, lambda stage_cfg: build_model(stage_cfg, NUM_CLASSES), train_rows, val_rows,
                              label, NUM_CLASSES, metrics_fn=fivek_metrics, wandb_run=wandb_run)

        def probabilities(model, rows):
            return predict_probabilities(model, rows, cfg.data.image_size, max(cfg.data.batch_size, 64),
                                         flip_tta=cfg.pseudo_label.tta == "flip", resize=cfg.data.resize,
                                         cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)

        y_test = heldout[label].to_numpy().astype(int)
        decision, score_fns = None, None
        if label == "5k":  # the submitted label: threshold and predictor chosen on validation
            score_fns = fivek_decision.scorers(probabilities, trained.model,
                                               fivek_decision.earlier_stage_models(cfg, NUM_CLASSES))
            decision = fivek_decision.choose(score_fns, val_rows, heldout)
            test_pred = (score_fns["trained"](heldout) >= decision["trained"]["threshold"]).astype(int)
        else:
            test_pred = probabilities(trained.model, heldout).argmax(1)
        confusion_plot(
            confusion_matrix(y_test, test_pred, NUM_CLASSES), os.path.join(trained.folder, "confusion.png"),
            [f"{label}=0", f"{label}=1"], title=f"{stage.name}: held-out split",
        )
        metrics = {
            "human_labelled": int((table[f"{label}_source"] == "human").sum()),
            "trained_on": len(train_rows),
            "warm_start": trained.info["init_from"],
            "epochs_run": trained.info["epochs_run"],
            **({"stopped_on_nan": trained.info["stopped_on_nan"]} if "stopped_on_nan" in trained.info else {}),
            "heldout_accuracy": accuracy(y_test, test_pred),
            "heldout_f1": f1_score(y_test, test_pred, average="binary"),
        }
        if decision is not None:
            metrics.update(decision_threshold=decision["trained"]["threshold"], decision=decision)
        missing = table.index[table[label].isna()]
        probs = probabilities(trained.model, table.loc[missing])
        confidence, predicted = probs.max(axis=1) if len(probs) else probs[:, 0], probs.argmax(axis=1)
        accept = confidence >= cfg.pseudo_label.threshold
        accepted = missing[accept]
        table.loc[accepted, label] = predicted[accept].astype(float)
        table.loc[accepted, f"{label}_source"] = "pseudo"
        table.loc[accepted, f"{label}_confidence"] = confidence[accept]
        metrics.update(
            missing_before=len(missing),
            pseudo_labelled=int(accept.sum()),
            still_missing=int(table[label].isna().sum()),
            filled_5k_by_rule=fill_5k_by_rule(table),
        )
        if truth is not None and len(missing):
            true = truth.set_index("image_id").loc[table.loc[missing, "image_id"], label].to_numpy().astype(int)
            metrics["pseudo_label_accuracy"] = accuracy(true[accept], predicted[accept]) if accept.any() else None
            metrics["accuracy_all_missing"] = accuracy(true, predicted)
        if wandb_run is not None:
            wandb_run.summary.update(metrics)
            attach_figures(wandb_run, cfg.run_dir, stage.name)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    table["label_source"] = summarize_sources(table)
    write_completed_table(os.path.join(trained.folder, "table.csv"), table)
    if test is not None and len(test.table):
        from keras_fgvc.data.prepare import class_prior
        from keras_fgvc.export.submission import (
            write_fivek_predictions,
            write_predictions_csv,
        )

        # Zalo's file needs every public-test image, and an unreadable one shows the model nothing.
        # Its P(label = 1) is then the label's frequency in the rows this stage trained on (what
        # the data says when test images are drawn like the training ones), and it is decided as
        # every other row is: at the threshold chosen on validation (5k), else the likelier class.
        prior = class_prior(train_rows[label], NUM_CLASSES)
        if decision is not None:
            positive = test.answers(fivek_decision.decide(decision, score_fns, test.kept)[0], prior[1])
            predicted = (positive >= fivek_decision.submission_threshold(decision)).astype(int)
            probs = np.stack([1.0 - positive, positive], axis=1)
        else:
            probs = test.answers(probabilities(trained.model, test.kept), prior)
            predicted = probs.argmax(1)
        fnames = test.table["fname"]
        write_fivek_predictions(os.path.join(trained.folder, "submission.csv"), fnames, predicted, label_column=label)
        write_predictions_csv(os.path.join(trained.folder, "predictions.csv"), fnames, probs, id_column="fname",
                              decisions=predicted)
        metrics.update(test_predictions=len(test.table), test_unreadable=int((~test.readable).sum()))
        if metrics["test_unreadable"]:
            answer = int(predicted[~test.readable][0])
            metrics["test_prior"] = {"p_1": float(prior[1]), "label": answer}
            print(f"stage '{stage.name}': {metrics['test_unreadable']} unreadable public-test images answered with "
                  f"the prior, P({label}=1) {prior[1]:.3f} in the training rows -> {label}={answer}")
    if cfg.export.enabled:
        metrics["export"] = export_stage(cfg, trained.model, stage.name, train_rows, val_rows,
                                         val_rows[label].to_numpy().astype(int),
                                         decision_threshold=metrics.get("decision_threshold"))
    rundir.write_json(os.path.join(trained.folder, "metrics.json"), metrics)
    return metrics


def format_results(results: dict, plan) -> str:
    rows = [
        ("human-labelled rows", "human_labelled", "{}"),
        ("missing before stage", "missing_before", "{}"),
        ("pseudo-labelled rows", "pseudo_labelled", "{}"),
        ("still missing", "still_missing", "{}"),
        ("5k filled by rule", "filled_5k_by_rule", "{}"),
        ("pseudo-label accuracy", "pseudo_label_accuracy", "{:.3f}"),
        ("accuracy on all missing", "accuracy_all_missing", "{:.3f}"),
        ("held-out accuracy", "heldout_accuracy", "{:.3f}"),
        ("held-out F1", "heldout_f1", "{:.3f}"),
        ("5k decision threshold", "decision_threshold", "{:.3f}"),
    ]
    stages = list(results)
    width = 26
    lines = [f"5K pseudo-labelling ({plan.device}, {plan.precision})", f"{'':{width}}" + "".join(f"{s:>12}" for s in stages)]
    for title, key, fmt in rows:
        cells = [fmt.format(results[s][key]) if results[s].get(key) is not None else "-" for s in stages]
        lines.append(f"{title:{width}}" + "".join(f"{c:>12}" for c in cells))
    for stage in stages:
        decision = results[stage].get("decision")
        if decision:
            lines.append(f"{stage}: submission from the '{decision['submission_predictor']}' predictor (better F1 on validation)")
            for name in fivek_decision.PREDICTORS:
                if name in decision:
                    d = decision[name]
                    val_f1 = "-" if d["val_f1"] is None else f"{d['val_f1']:.3f}"
                    lines.append(f"  {name:>8}: threshold {d['threshold']:.3f}  val F1 {val_f1}  held-out F1 "
                                 f"{d['heldout_f1']:.3f} (at 0.5: {d['heldout_f1_at_0.5']:.3f})  accuracy {d['heldout_accuracy']:.3f}")
    return "\n".join(lines)
