"""VIPriors 2020 image classification: ResNet family from scratch (SYSTEMS.md section 3; seed 002).

The stages are ``pipelines/vipriors.yaml``'s (``ce``, then ``margin`` from ce's weights with the
fine-tuning recipe ``vipriors.finetune`` picks) and run through the shared single-label flow
(``pipelines/classifier.py``: single-view top-1/top-5 on val, exports). What is VIPriors' own
lives here:

    predict   every trained stage's class probabilities on val and test averaged over the TTA
              views (``vipriors.tta``, scaled to ``data.image_size``); top-1/top-5 on val for the
              single view and TTA; ``predict/predictions.csv`` in the challenge's format from the
              last stage (``Image IDs,Predictions``: file name, class index of the sorted wnids, as
              the challenge toolkit's ``main.py -sub`` writes it), a row for every test image: one
              that cannot be read gets the prior, the training rows' class frequencies (its class:
              the most frequent), in its ``test_tta.npy`` row too, so an ensemble answers it alike
    ensemble  ``vipriors.ensemble=[run, run, ...]``: no training; averages the members' TTA
              probabilities (their last stage) and scores and writes them as one run

Run folder, besides the classifier's: ``predict/rows.json`` (the val/test ids and val labels the
probabilities are in the order of, and ``test_unreadable``: the test ids answered by the prior),
``predict/<stage>/{val,test}_tta.npy``, ``predict/metrics.json``.
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from keras_fgvc.config.schema import register_pipeline_options
from keras_fgvc.data import synthetic
from keras_fgvc.errors import UserError
from keras_fgvc.pipelines import classifier
from keras_fgvc.tracking import run_dir as rundir

STEPS = ("predict",)
PREDICT = "predict"
ROWS = "rows.json"


@dataclass
class VipriorsConfig:
    # The margin stage's recipe, a key of ``recipes``: the report's two fine-tunings from the CE model.
    finetune: str = "triplet"
    # {name: {model, images_per_class, losses}} of the margin stage (vipriors.yaml holds them).
    recipes: dict = field(default_factory=dict)
    # TTA views (evaluation/tta.py TTA_PRESETS), written for a model trained at tta_reference_size
    # and scaled to data.image_size.
    tta: str = "vipriors"
    tta_reference_size: int = 224
    # Run folders to ensemble instead of training (each has run the predict step).
    ensemble: list = field(default_factory=list)
    # Demo data: classes and images per class in each of train / val / test.
    demo_classes: int = 20
    demo_images_per_split: int = 50


register_pipeline_options("vipriors", "vipriors", VipriorsConfig, steps=STEPS)


def data_root(cfg) -> str:
    """``data.root``, or the demo ImageNet subset (generated on first use) for these settings."""
    v, size = cfg.vipriors, cfg.data.demo.image_size
    return synthetic.demo_root(
        cfg, f"vipriors-c{v.demo_classes}-n{v.demo_images_per_split}-s{size}", "test_truth.csv",
        lambda root: synthetic.make("imagenet_subset", root, seed=cfg.seed, num_classes=v.demo_classes,
                                    images_per_split=v.demo_images_per_split, image_size=size))


def run(cfg) -> dict:
    """Train the stages ``cfg.stage`` selects, then predict with TTA (or ensemble finished runs)."""
    from keras_fgvc.evaluation.tta import TTA_PRESETS

    if cfg.vipriors.tta not in TTA_PRESETS:
        raise UserError(f"config key 'vipriors.tta' = {cfg.vipriors.tta!r}; choose one of: {', '.join(TTA_PRESETS)}")
    if cfg.vipriors.ensemble:
        return ensemble(cfg)
    started = time.perf_counter()
    trains = cfg.stage not in STEPS
    if not trains:  # stage=predict on its own: the stages it predicts with must have trained
        _trained_stages(cfg, required=True)
    root = data_root(cfg)
    metrics = classifier.run(cfg, root) if trains else rundir.read_json(os.path.join(cfg.run_dir, "metrics.json"))
    if cfg.stage in ("all", PREDICT):
        metrics[PREDICT] = predict(cfg, root)
        metrics.update(val_top1_tta=metrics[PREDICT]["val_top1_tta"], wall_seconds=round(time.perf_counter() - started, 1))
    rundir.write_json(os.path.join(cfg.run_dir, "metrics.json"), metrics)
    return metrics


def _trained_stages(cfg, required: bool = False) -> list:
    """The declared stages that have best weights in the run folder, in order."""
    from keras_fgvc.training.callbacks import BEST
    from keras_fgvc.training.stages import stage_folder

    stages = [s for s in cfg.train.stages if os.path.isfile(os.path.join(stage_folder(cfg, s.name), BEST))]
    if required and not stages:
        raise UserError(f"stage=predict: no stage of {cfg.run_dir} has trained yet (no */best.weights.h5); "
                        "run stage=all, or a training stage first")
    return stages


def predict(cfg, root: str) -> dict:
    """TTA probabilities of every trained stage on val and test; scores, files, the submission."""
    from keras_fgvc.data.normalization import with_dataset_statistics
    from keras_fgvc.data.prepare import check_tables, submission_rows
    from keras_fgvc.evaluation.tta import predict_tta_batches, scaled_views, source_size

    tables = classifier.split_tables(cfg, root)
    checked, _ = check_tables(cfg, tables)
    test = submission_rows(tables, checked)  # the challenge wants every test image answered
    tables = {name: table.reset_index(drop=True) for name, table in checked.items()}
    cfg = with_dataset_statistics(cfg, tables["train"])
    num_classes = classifier.num_classes_of(tables)
    prior = classifier.prior_probabilities(tables["train"], num_classes)
    views = scaled_views(cfg.vipriors.tta, cfg.data.image_size, cfg.vipriors.tta_reference_size)
    folder = os.path.join(cfg.run_dir, PREDICT)
    ids = {"val": _ids(tables["val"]), "test": _ids(test.table), "test_unreadable": _ids(test.unreadable)}
    val_labels = tables["val"][classifier.LABEL].to_numpy().astype(int)
    rundir.write_json(os.path.join(folder, ROWS), {**ids, "val_labels": val_labels.tolist(),
                                                   "classes": tables["train"].attrs.get("classes")})
    result = {"views": len(views), "view_sizes": sorted({v["size"] for v in views}), "stages": {},
              "test_unreadable": len(ids["test_unreadable"])}
    if ids["test_unreadable"]:
        result["test_prior"] = int(prior.argmax())  # the class index predictions.csv gives them
    for stage in _trained_stages(cfg):
        single = rundir.read_json(os.path.join(cfg.run_dir, stage.name, "metrics.json")).get("val", {})
        models = _models_by_size(cfg, stage, num_classes, {v["size"] for v in views})
        probabilities = {}
        for split in ("val", "test"):
            rows = tables[split]
            probabilities[split] = (predict_tta_batches(models, _image_batches(cfg, rows, source_size(views)), views)
                                    if len(rows) else np.zeros((0, num_classes), np.float32))
            if split == "test":  # the unreadable test rows get the prior, in table order
                probabilities[split] = test.answers(probabilities[split], prior)
            _save(os.path.join(folder, stage.name, f"{split}_tta.npy"), probabilities[split])
        tta = scores(probabilities["val"], val_labels)
        result["stages"][stage.name] = {"single": {k: single.get(k) for k in ("top1", "top5")}, "tta": tta}
        print(f"stage '{stage.name}': val top-1 single view {_fmt(single.get('top1'))}, "
              f"TTA ({len(views)} views) {_fmt(tta.get('top1'))}")
    last = list(result["stages"])[-1]
    result.update(submission_stage=last, val_top1_tta=result["stages"][last]["tta"].get("top1"))
    write_challenge_csv(os.path.join(folder, "predictions.csv"), ids["test"],
                        np.load(os.path.join(folder, last, "test_tta.npy")))
    rundir.write_json(os.path.join(folder, "metrics.json"), result)
    return result


def _ids(table) -> list[str]:
    return [str(v) for v in classifier.row_ids(table)]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _save(path: str, array: np.ndarray):
    """``np.save`` through a temporary file, so a kill never leaves half an array under ``path``."""
    from keras_fgvc.atomic import atomic_open

    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 and top-5 of probabilities against integer labels (empty for no rows)."""
    from keras_fgvc.evaluation.metrics import accuracy, top_k_accuracy

    if not len(labels):
        return {}
    return {"top1": accuracy(labels, probabilities.argmax(1)),
            "top5": top_k_accuracy(labels, probabilities, min(5, probabilities.shape[1]))}


def _models_by_size(cfg, stage, num_classes: int, sizes) -> dict:
    """``{size: stage's model at its best weights, built for size x size inputs}``: a convolutional
    classifier's weights do not depend on its input size, Keras' input shape does."""
    import dataclasses

    from keras_fgvc.models import build_model
    from keras_fgvc.training.callbacks import BEST
    from keras_fgvc.training.stages import stage_config, stage_folder

    trained = build_model(stage_config(cfg, stage), num_classes)
    trained.load_weights(os.path.join(stage_folder(cfg, stage.name), BEST))
    models = {cfg.data.image_size: trained}
    for size in sorted(set(sizes) - {cfg.data.image_size}):
        sized = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=int(size)))
        models[size] = build_model(stage_config(sized, stage), num_classes)
        models[size].set_weights(trained.get_weights())
    return models


def _image_batches(cfg, table, size: int):
    """Decoded image batches of ``table`` at ``size`` x ``size`` (the training resize policy)."""
    from keras_fgvc.data.pipeline import PipelineSpec, build

    spec = PipelineSpec(size, max(cfg.data.batch_size, 32), channels=cfg.model.img_channels, resize=cfg.data.resize,
                        box_mode=cfg.data.box_mode, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
    return (inputs["image"] for inputs in build(table, spec, training=False))


def write_challenge_csv(path: str, image_ids, probabilities: np.ndarray):
    """The VIPriors submission: ``Image IDs,Predictions`` (file name, argmax class index), one row
    per test image, written atomically."""
    import pandas as pd

    rundir.write_table(path, pd.DataFrame({"Image IDs": list(image_ids), "Predictions": probabilities.argmax(1)}))


# --- ensemble ------------------------------------------------------------------------------------


def ensemble(cfg) -> dict:
    """Average the last-stage TTA probabilities of ``vipriors.ensemble``'s runs; score and write them."""
    from keras_fgvc.evaluation.ensemble import average_probabilities

    members = [_member(path) for path in cfg.vipriors.ensemble]
    rows = members[0]["rows"]
    for member in members[1:]:
        for key in ("val", "test", "val_labels", "test_unreadable"):
            if member["rows"].get(key, []) != rows.get(key, []):
                raise UserError(f"vipriors.ensemble: {member['path']} predicted other {key} rows than "
                                f"{members[0]['path']} (ensemble runs of one data set and split)")
    folder = os.path.join(cfg.run_dir, PREDICT)
    result = {"members": [{"run": m["path"], "stage": m["stage"], "val_top1_tta": m["val_top1_tta"]} for m in members],
              "test_unreadable": len(rows.get("test_unreadable", []))}  # their rows hold each member's prior
    labels = np.asarray(rows["val_labels"], int)
    for split in ("val", "test"):
        averaged = average_probabilities([m[split] for m in members])
        _save(os.path.join(folder, f"{split}_ensemble.npy"), averaged)
        if split == "val":
            result["val"] = scores(averaged, labels)
        else:
            write_challenge_csv(os.path.join(folder, "predictions.csv"), rows["test"], averaged)
    result["val_top1_ensemble"] = result["val"].get("top1")
    rundir.write_json(os.path.join(folder, ROWS), rows)
    rundir.write_json(os.path.join(folder, "metrics.json"), result)
    rundir.write_json(os.path.join(cfg.run_dir, "metrics.json"), {PREDICT: result, "val_top1_ensemble": result["val_top1_ensemble"]})
    print(f"ensemble of {len(members)} runs: val top-1 {_fmt(result['val_top1_ensemble'])} "
          f"(members: {', '.join(_fmt(m['val_top1_tta']) for m in members)})")
    return result


def _member(path: str) -> dict:
    """One finished run's predict files; UserError naming the first that is missing."""
    folder = os.path.join(path, PREDICT)
    needed = [os.path.join(folder, "metrics.json"), os.path.join(folder, ROWS)]
    for name in needed:
        if not os.path.isfile(name):
            raise UserError(f"vipriors.ensemble: {name} not found (run the predict step of {path} first: "
                            "stage=all or stage=predict)")
    metrics = rundir.read_json(needed[0])
    stage = metrics["submission_stage"]
    member = {"path": path, "stage": stage, "rows": rundir.read_json(needed[1]), "val_top1_tta": metrics.get("val_top1_tta")}
    for split in ("val", "test"):
        file = os.path.join(folder, stage, f"{split}_tta.npy")
        if not os.path.isfile(file):
            raise UserError(f"vipriors.ensemble: {file} not found (run the predict step of {path} again)")
        member[split] = np.load(file)
    return member
