"""Weights & Biases, offline by default: no account and no network needed. An offline run is
a folder under ``<run_dir>/wandb`` that ``wandb sync`` can upload later."""

import os

import keras


def start(tracking_cfg, run_dir: str, name: str, config: dict):
    """A wandb run (or None when tracking.wandb=disabled)."""
    if tracking_cfg.wandb == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb  # lazy: importing wandb costs ~1 s

    return wandb.init(
        project=tracking_cfg.project,
        name=name,
        dir=run_dir,
        mode=tracking_cfg.wandb,
        config=config,
        reinit="finish_previous",
    )


def attach_figures(run, run_dir: str, stage: str) -> list:
    """Log the stage's figures to its W&B run as images: the report's training curves (drawn now,
    ``tracking/report.py``) and every PNG in the stage folder (confusion matrices and the like), so a
    synced run shows the plots the report shows. Returns the image keys, ``figures/<file name>``."""
    import glob

    import wandb

    from keras_fgvc.tracking.report import draw_curves

    curves = draw_curves(run_dir, stage)
    paths = ([os.path.join(run_dir, curves)] if curves else []) + sorted(glob.glob(os.path.join(run_dir, stage, "*.png")))
    images = {f"figures/{os.path.splitext(os.path.basename(p))[0]}": wandb.Image(p) for p in paths}
    if images:
        run.log(images)
    return sorted(images)


class WandbLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics and learning rate to a wandb run."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        values = {k: float(v) for k, v in (logs or {}).items()}
        lr = self.model.optimizer.learning_rate
        values["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        self.run.log(values, step=epoch)
