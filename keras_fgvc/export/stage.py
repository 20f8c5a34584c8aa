"""Per-stage exports every driver calls: ``saved_models/<pipeline>/<name>/<stage>/`` (SavedModel with
the bytes-in signatures) and optional TFLite files next to it, checked against the Keras model.

Exports belong to a run (``name=``, a sweep job's ``<name>-<key>=<value>``): a smoke run, a second
run or a sweep job never collides with another run's exports."""

import os

import numpy as np

from keras_fgvc.export.saved_model import check_writable


def stage_export_path(cfg, stage: str) -> str:
    """``<export.dir>/<pipeline>/<name>/<stage>``, e.g. saved_models/fivek/default/mask."""
    return os.path.join(cfg.export.dir, cfg.pipeline, cfg.name, stage)


def tflite_paths(cfg, stage: str) -> dict:
    """{quantization: file} of the stage's TFLite exports, e.g. saved_models/fivek/default/mask.int8.tflite."""
    return {q: f"{stage_export_path(cfg, stage)}.{q}.tflite" for q in cfg.export.tflite}


def check_stage_exports(cfg, stages) -> None:
    """Before any work: refuse when a stage's export would overwrite one (unless export.overwrite)."""
    if not cfg.export.enabled:
        return
    for stage in stages:
        for path in (stage_export_path(cfg, stage), *tflite_paths(cfg, stage).values()):
            check_writable(path, cfg.export.overwrite)


def export_stage(cfg, model, stage: str, calibration_rows, val_rows=None, val_labels=None, classes=None,
                 decision_threshold=None) -> dict:
    """SavedModel (+ TFLite files compared with Keras on ``val_rows``); returns what was written.

    Args:
        cfg: the run's Config (export group, data.image_size, seed).
        model: the stage's inference model.
        stage: the stage name (the export folder).
        calibration_rows: Table rows whose images calibrate int8 quantisation.
        val_rows, val_labels: rows and integer labels to compare TFLite with Keras on.
        classes: the class mapping (``data.classes``) stored with the SavedModel.
        decision_threshold: a binary model's threshold on P(class 1) for ``top_class``.
    """
    from keras_fgvc.data.pipeline import PipelineSpec, build
    from keras_fgvc.export.saved_model import export_saved_model
    from keras_fgvc.export.tflite import compare_with_keras, export_tflite

    size, channels = cfg.data.image_size, cfg.model.img_channels
    exported = {"saved_model": export_saved_model(model, stage_export_path(cfg, stage), size, channels,
                                                  overwrite=cfg.export.overwrite,
                                                  classes=classes, resize=cfg.data.resize,
                                                  decision_threshold=decision_threshold)}
    if not cfg.export.tflite:
        return exported

    def pixels(rows):
        spec = PipelineSpec(size, 64, channels=channels, resize=cfg.data.resize, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
        batches = build(rows, spec, training=False)
        return np.concatenate([batch["image"].numpy() for batch in batches])

    sample = calibration_rows.sample(min(len(calibration_rows), cfg.export.calibration_images), random_state=cfg.seed)
    calibration = pixels(sample)
    val_images = pixels(val_rows) if val_rows is not None and len(val_rows) else None
    for quantization, path in tflite_paths(cfg, stage).items():
        export_tflite(model, path, size, channels, quantization=quantization, representative_images=calibration,
                      overwrite=cfg.export.overwrite)
        exported[f"tflite_{quantization}"] = {"path": path, "size_mb": os.path.getsize(path) / 1e6}
        if val_images is not None:
            exported[f"tflite_{quantization}"].update(compare_with_keras(model, path, val_images, val_labels))
    return exported
