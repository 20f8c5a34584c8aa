"""The 5k decision: which predictor and which threshold make the submission.

5k is positive in ~16% of Zalo's real rows. A model trained on such labels can put every row
below P = 0.5 (held-out F1 0.000 on the real set), so the decision threshold is chosen on the
validation rows for F1 (``evaluation.metrics.best_f1_threshold``) and travels with the export.
Two predictors compete on those rows:

- ``trained``: the 5k stage's own model, P(5k = 1);
- ``product``: P(mask = 1) x P(distancing = 1) from the mask and distancing stages' best
  models, since 5k = mask AND distancing (treating the two as independent given the image).

The one with the higher validation F1 (ties: ``trained``) predicts the public test set; both are
reported on the held-out rows. Validation and held-out rows are human-labelled rows that no
stage trains on (``pseudo_label.initial_table``), so the comparison is fair to both.
"""

import os

import numpy as np

PREDICTORS = ("trained", "product")


def earlier_stage_models(cfg, num_classes: int) -> dict | None:
    """``{"mask": model, "distancing": model}`` at their stages' best weights, or None when a
    stage of either label is not declared or has not trained in this run directory."""
    from keras_fgvc.models import build_model
    from keras_fgvc.training.callbacks import BEST
    from keras_fgvc.training.stages import stage_config, stage_folder

    models = {}
    for label in ("mask", "distancing"):
        stage = next((s for s in cfg.train.stages if s.targets.get("logits") == label), None)
        path = os.path.join(stage_folder(cfg, stage.name), BEST) if stage is not None else None
        if path is None or not os.path.isfile(path):
            return None
        models[label] = build_model(stage_config(cfg, stage), num_classes)
        models[label].load_weights(path)
    return models


def scorers(predict, model, earlier: dict | None) -> dict:
    """``{predictor: rows -> P(5k = 1) per row}`` (``predict(model, rows)`` gives probabilities)."""
    found = {"trained": lambda rows: predict(model, rows)[:, 1]}
    if earlier is not None:
        found["product"] = lambda rows: predict(earlier["mask"], rows)[:, 1] * predict(earlier["distancing"], rows)[:, 1]
    return found


def choose(score_fns: dict, val_rows, heldout_rows, label: str = "5k") -> dict:
    """Thresholds on validation, held-out F1/accuracy at them, and the submission's predictor.

    Returns ``{"submission_predictor": name, "<name>": {"threshold", "val_f1", "heldout_f1",
    "heldout_accuracy", "heldout_f1_at_0.5"}}`` for each predictor in ``score_fns``.
    """
    from keras_fgvc.evaluation.metrics import accuracy, best_f1_threshold, f1_score

    y_val = val_rows[label].to_numpy().astype(int)
    y_heldout = heldout_rows[label].to_numpy().astype(int)
    report = {}
    for name, score in score_fns.items():
        threshold, val_f1 = best_f1_threshold(y_val, score(val_rows)) if len(val_rows) else (0.5, None)
        heldout = score(heldout_rows)
        report[name] = {
            "threshold": threshold, "val_f1": val_f1,
            "heldout_f1": f1_score(y_heldout, (heldout >= threshold).astype(int)),
            "heldout_accuracy": accuracy(y_heldout, (heldout >= threshold).astype(int)),
            "heldout_f1_at_0.5": f1_score(y_heldout, (heldout >= 0.5).astype(int)),
        }
    ranked = sorted(report, key=lambda name: (report[name]["val_f1"] or 0.0, name == "trained"), reverse=True)
    return {"submission_predictor": ranked[0], **report}


def submission_threshold(decision: dict) -> float:
    """The threshold of the submission's predictor: a row is 5k = 1 when its P(5k = 1) reaches it."""
    return decision[decision["submission_predictor"]]["threshold"]


def decide(decision: dict, score_fns: dict, rows) -> tuple[np.ndarray, np.ndarray]:
    """``(P(5k = 1), 0/1 decisions)`` of the submission's predictor for ``rows``."""
    scores = score_fns[decision["submission_predictor"]](rows)
    return scores, (scores >= submission_threshold(decision)).astype(int)
