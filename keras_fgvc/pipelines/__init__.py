"""Pipeline drivers: each wires sources, tf.data, models, training and export for one system.

A driver module exposes ``run(cfg)``; one with options of its own registers their dataclass
(``config.schema.register_pipeline_options``) when imported, so the config schema of a pipeline
is known before anything runs.
"""

import importlib
import time

# pipeline name -> driver module with run(cfg)
DRIVERS = {
    "fivek": "keras_fgvc.pipelines.pseudo_label",
    "cars": "keras_fgvc.pipelines.cars",
    "hotel_id": "keras_fgvc.pipelines.hotel_id",
    "squeeze": "keras_fgvc.pipelines.squeeze",
    "vipriors": "keras_fgvc.pipelines.vipriors",
}
# tasks other than "train", shared by every pipeline -> module with run(cfg)
TASKS = {
    "preview_augment": "keras_fgvc.pipelines.preview_augment",
    "model_card": "keras_fgvc.pipelines.model_card",
    "to_tfrecord": "keras_fgvc.pipelines.to_tfrecord",
    "compare": "keras_fgvc.pipelines.compare",
    "report": "keras_fgvc.pipelines.report",
}


def import_driver(pipeline: str):
    """The driver module of ``pipeline`` (None when it has none yet)."""
    return importlib.import_module(DRIVERS[pipeline]) if pipeline in DRIVERS else None


def dispatch(cfg, command: str | None = None):
    """Run ``cfg.task`` for ``cfg.pipeline``; a pipeline run holds its run folder while it works
    (a second process on the same folder refuses: ``tracking.run_dir.run_lock``) and ends with its
    report (``report.html`` + ``report.md``, ``tracking/report.py``), which names ``command``."""
    from keras_fgvc.errors import UserError
    from keras_fgvc.tracking.run_dir import run_lock

    if cfg.task in TASKS:
        return importlib.import_module(TASKS[cfg.task]).run(cfg)
    if cfg.pipeline not in DRIVERS:
        raise UserError(f"pipeline '{cfg.pipeline}' has no driver yet; available: {', '.join(sorted(DRIVERS))}")
    from keras_fgvc.tracking.report import write_report

    with run_lock(cfg.run_dir):
        started = time.perf_counter()
        result = import_driver(cfg.pipeline).run(cfg)
        print(f"report: {write_report(cfg.run_dir, command, time.perf_counter() - started)[0]}")
        return result
