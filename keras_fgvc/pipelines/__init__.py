"""Pipeline drivers: each wires sources, tf.data, models, training and export for one system."""

import importlib

# pipeline name -> driver module with run(cfg)
DRIVERS = {"fivek": "keras_fgvc.pipelines.pseudo_label"}
# tasks other than "train", shared by every pipeline -> module with run(cfg)
TASKS = {
    "preview_augment": "keras_fgvc.pipelines.preview_augment",
    "model_card": "keras_fgvc.pipelines.model_card",
}


def dispatch(cfg):
    """Run ``cfg.task`` for ``cfg.pipeline``."""
    from keras_fgvc.errors import UserError

    if cfg.task in TASKS:
        return importlib.import_module(TASKS[cfg.task]).run(cfg)
    if cfg.pipeline not in DRIVERS:
        raise UserError(f"pipeline '{cfg.pipeline}' has no driver yet; available: {', '.join(sorted(DRIVERS))}")
    return importlib.import_module(DRIVERS[cfg.pipeline]).run(cfg)
