"""The fivek benchmark's large evaluation set: both sides' models scored on ~9.5k test pictures.

The benchmark's own hidden rows (~770 for distancing) and held-out rows (~390) give accuracies with
standard errors of 0.010 and 0.015, larger than the differences between the pipeline and the plain
CNN. Fashion-MNIST's test split (10,000 pictures, no side trains on any of them) drawn in the
benchmark's class mix gives ~9.5k rows, and scoring both sides on the *same* rows makes the paired
difference far tighter: its 95% interval (a paired bootstrap over rows) says whether the pipeline
beats the CNN, is level with it, or trails it. Not a benchmark itself (leading underscore).
"""

import json
import os

import numpy as np
import pandas as pd
from PIL import Image

from keras_fgvc.evaluation.metrics import accuracy, f1_score

BOOTSTRAP_DRAWS = 1000


def class_mix_positions(classes, class_weights, rng):
    """Positions of ``classes`` in ``class_weights`` proportions, as many as the mix allows.

    The class whose count limits the mix is taken whole; the others are subsampled to match.
    """
    counts = np.bincount(classes, minlength=len(class_weights))
    scale = min(counts[c] / w for c, w in enumerate(class_weights) if w > 0)
    picks = [rng.choice(np.flatnonzero(classes == c), int(round(w * scale)), replace=False)
             for c, w in enumerate(class_weights) if w > 0]
    return np.sort(np.concatenate(picks))


def write_eval_set(root, images, classes, class_weights, seed=0):
    """``<root>/eval_images/``: a picture per drawn position (``<position>.png``) and ``eval.csv``,
    a table with ``path`` and ``class`` per picture in the benchmark's class mix. Reused when
    ``eval.csv`` lists the same pictures."""
    folder = os.path.join(root, "eval_images")
    listing = os.path.join(folder, "eval.csv")
    positions = class_mix_positions(np.asarray(classes), class_weights, np.random.default_rng(seed))
    paths = [os.path.join(folder, f"{position}.png") for position in positions]
    if os.path.isfile(listing):
        table = pd.read_csv(listing)
        if table["path"].tolist() == paths:
            return table
    os.makedirs(folder, exist_ok=True)
    for position, path in zip(positions, paths):
        Image.fromarray(images[position], mode="L").save(path)
    table = pd.DataFrame({"path": paths, "class": np.asarray(classes)[positions]})
    table.to_csv(listing + ".tmp", index=False)
    os.replace(listing + ".tmp", listing)  # written last: a half-written folder is redone
    return table


def pipeline_probabilities(run_dir, table, stages=("mask", "distancing", "fivek")):
    """``{stage: P(class 1) per row of table}`` from each stage's best weights, predicted as the
    pipeline predicts (its image size, resize policy and test-time augmentation)."""
    from keras_fgvc.evaluation.predict import predict_probabilities
    from keras_fgvc.tracking.stage_card import BEST, rebuild

    scores = {}
    for stage in stages:
        stage_dir = os.path.join(run_dir, stage)
        if not os.path.isfile(os.path.join(stage_dir, BEST)):
            continue
        model, cfg = rebuild(stage_dir)
        model.load_weights(os.path.join(stage_dir, BEST))
        scores[stage] = predict_probabilities(model, table, cfg.data.image_size, 256, resize=cfg.data.resize,
                                              flip_tta=cfg.pseudo_label.tta == "flip", cache=False)[:, 1]
    return scores


def pipeline_5k(run_dir, scores):
    """``{"submitted": 0/1, "5k model": 0/1}``: the pipeline's 5k predictors at the thresholds it
    chose on validation (``metrics.json``'s decision), for the rows ``scores`` were predicted on.

    Decided by the pipeline's own ``fivek_decision.scorers`` and ``decide``, with each stage's
    model standing for its stored P(class 1)."""
    from keras_fgvc.pipelines.fivek_decision import decide, scorers

    with open(os.path.join(run_dir, "metrics.json")) as f:
        decision = (json.load(f).get("fivek") or {}).get("decision")
    if not decision or "fivek" not in scores:
        return {}
    earlier = None
    if "mask" in scores and "distancing" in scores:
        earlier = {"mask": scores["mask"], "distancing": scores["distancing"]}
    score_fns = scorers(lambda p1, _rows: np.stack([1 - p1, p1], axis=1), scores["fivek"], earlier)
    return {"submitted": decide(decision, score_fns, None)[1],
            "5k model": decide({**decision, "submission_predictor": "trained"}, score_fns, None)[1]}


def paired_difference(metric, truth, ours, theirs, seed=0):
    """``(metric(ours), metric(theirs), difference, (low, high))``: the 95% interval of
    ``metric(ours) - metric(theirs)`` over a paired bootstrap of the rows."""
    truth, ours, theirs = (np.asarray(a) for a in (truth, ours, theirs))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP_DRAWS):
        rows = rng.integers(0, len(truth), len(truth))
        draws.append(metric(truth[rows], ours[rows]) - metric(truth[rows], theirs[rows]))
    low, high = np.percentile(draws, [2.5, 97.5])
    a, b = metric(truth, ours), metric(truth, theirs)
    return a, b, a - b, (float(low), float(high))


def verdict(interval) -> str:
    low, high = interval
    return "beats" if low > 0 else "trails" if high < 0 else "level"


def compare(truth_by_label, pipeline_pred, cnn_pred):
    """Rows ``(label, metric, ours, theirs, difference, interval, verdict)`` for every label both
    sides predicted: accuracy for mask and distancing, F1 and accuracy for 5k."""
    rows = []
    for label, pipeline_label in (("mask", "mask"), ("distancing", "distancing"), ("5k", "submitted"),
                                  ("5k", "5k model")):
        if pipeline_label not in pipeline_pred or label not in cnn_pred:
            continue
        metrics = ((accuracy, "accuracy"),) if label != "5k" else ((f1_score, "F1"), (accuracy, "accuracy"))
        for metric, metric_name in metrics:
            name = f"{metric_name}, {pipeline_label}" if label == "5k" else metric_name
            ours, theirs, difference, interval = paired_difference(
                metric, truth_by_label[label], pipeline_pred[pipeline_label], cnn_pred[label])
            rows.append((label, name, ours, theirs, difference, interval, verdict(interval)))
    return rows
