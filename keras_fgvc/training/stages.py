"""The training engine: a pipeline is a list of stages declared in its YAML (``train.stages``).

For any stage the engine builds the model in the strategy scope, warm-starts it (``init_from``),
freezes what the stage says, compiles the ``Trainer`` with the stage's losses (looked up by name,
keyed by model output), optimiser and schedule, and fits it with the standard callbacks; the
inference model comes back holding the best checkpoint's weights. A driver only adds what is
specific to its system (5K label completion, Hotel-ID gallery, Squeeze report):

    for stage in stages_to_run(cfg):
        run = train_stage(cfg, plan, stage, lambda c: build_model(c, k), train_rows, val_rows, "label", k)
        probabilities = predict_table(run.model, rows, cfg.data.image_size)

Stage files live in ``<run_dir>/<stage>/``: ``best.weights.h5``, ``last.weights.h5``, ``history.csv``,
``config.yaml`` (the stage's resolved config), ``checkpoint.json`` (best value and epoch), ``backup/``
while it trains (the resume state of the last completed epoch) and ``finished.json`` once it has
(info and history).

Resume (``resume=true``) and the order of the training batches: ``training/resume.py``.
A pretrained backbone (``model.weights``, ``backbone=hub``) is fine-tuned with the recipe of
``training/finetune.py`` (``train.finetune``): a head-only phase ``<stage>_head`` with its own
folder, then the stage with BatchNorm frozen, a lower backbone learning rate and a warm-up.
"""

import dataclasses
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_fgvc.config.validate import to_dict
from keras_fgvc.errors import UserError
from keras_fgvc.tracking.progress import EpochLine, fit_verbosity, interactive
from keras_fgvc.tracking.run_dir import write_config
from keras_fgvc.training.callbacks import (
    BACKUP_DIR,
    BEST,
    HISTORY,
    BestAndLastCheckpoint,
    NanGuard,
    monitor_mode,
    remove_partial_files,
    stage_callbacks,
    truncate_history,
)
from keras_fgvc.training.finetune import freeze, head_stage_name  # freeze: importable from here too
from keras_fgvc.training.resume import (
    FINISHED,
    interrupted_epochs,
    is_finished,
    read_history,
    resumed_dataset,
    start_fresh,
)


@dataclass
class StageRun:
    """What a trained stage hands back to its driver."""

    stage: object  # StageConfig
    model: keras.Model  # the inference model, holding the best checkpoint's weights
    history: dict
    folder: str
    info: dict  # warm start, frozen layers, epochs run, best epoch


def stages_to_run(cfg) -> list:
    """The StageConfigs ``cfg.stage`` selects (all of them, in order, for ``stage=all``)."""
    stages = cfg.train.stages
    return list(stages) if cfg.stage == "all" else [s for s in stages if s.name == cfg.stage]


def stage_folder(cfg, name: str) -> str:
    return os.path.join(cfg.run_dir, name)


def previous_stage(cfg, stage):
    """The stage declared just before ``stage`` (None for the first)."""
    names = [s.name for s in cfg.train.stages]
    index = names.index(stage.name)
    return cfg.train.stages[index - 1] if index else None


def stage_config(cfg, stage):
    """``cfg`` as the stage sees it: ``model`` with the stage's overrides (e.g. a student backbone)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **stage.model)) if stage.model else cfg


def stage_train_config(cfg, stage):
    """``cfg.train`` with the stage's overrides and epochs applied (``finetune`` merged key by key)."""
    overrides = dict(stage.train)
    if isinstance(overrides.get("finetune"), dict):
        overrides["finetune"] = dataclasses.replace(cfg.train.finetune, **overrides["finetune"])
    merged = dataclasses.replace(cfg.train, **overrides)
    return dataclasses.replace(merged, epochs=stage.epochs or merged.epochs)


def init_weights(cfg, stage) -> str | None:
    """The weights file ``stage`` starts from, or None; UserError when it should exist and does not."""
    source = stage.init_from
    if source == "none":
        return None
    if source == "previous":
        before = previous_stage(cfg, stage)
        if before is None:
            return None
        source = before.name
    if source in [s.name for s in cfg.train.stages]:
        path = os.path.join(stage_folder(cfg, source), BEST)
        if not os.path.isfile(path):
            raise UserError(
                f"stage '{stage.name}' starts from stage '{source}': {path} not found "
                f"(run stage={source} first, or stage=all)"
            )
        return path
    if not os.path.isfile(source):
        raise UserError(f"stage '{stage.name}': init_from weights file {source} not found")
    return source


def check_no_interrupted_run(cfg, stages) -> None:
    """Without ``resume=true``: refuse a stage that an earlier, killed run left half trained."""
    if cfg.resume:
        return
    for name in [n for stage in stages for n in (head_stage_name(stage.name), stage.name)]:  # + recipe head phases
        epochs = interrupted_epochs(stage_folder(cfg, name))
        if epochs:
            backup = os.path.join(stage_folder(cfg, name), BACKUP_DIR)
            raise UserError(
                f"stage '{name}' of run {cfg.run_dir} was interrupted after {epochs} epoch(s) ({backup}); "
                f"add resume=true to continue it, or delete {backup} to train the stage from scratch"
            )


def check_can_start(cfg, stages) -> None:
    """Before anything is written: no interrupted run is overwritten (without resume=true) and the
    first selected stage's inputs from earlier stages exist."""
    check_no_interrupted_run(cfg, stages)
    if stages:
        init_weights(cfg, stages[0])
        teacher = stages[0].teacher
        if teacher in [s.name for s in cfg.train.stages] and not os.path.isfile(os.path.join(stage_folder(cfg, teacher), BEST)):
            raise UserError(f"stage '{stages[0].name}' distils from stage '{teacher}', which has not run yet "
                            f"(run stage={teacher} first, or stage=all)")


def warm_start(model: keras.Model, path: str) -> list[str]:
    """Load ``path`` into ``model`` layer by layer; returns the layers it could not fill.

    Layers match by name, so a stage may add a head or change the number of classes: what does
    not match keeps its fresh initialisation and is reported (Keras' ``skip_mismatch``).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path, skip_mismatch=True)
    skipped = []
    for warning in caught:
        text = str(warning.message)
        if "skip" in text.lower():  # Keras: "Skipping variable loading for ..." / "skipping ..."
            skipped.append(text.splitlines()[0][:200])
    return skipped


def stage_steps(cfg, stage) -> list[dict]:
    """The augmentation steps a stage trains with: its own steps or preset, else the augment
    group's, less ``augment.skip``."""
    from keras_fgvc.augment import presets

    if stage.augment_steps is not None:
        steps = stage.augment_steps
    elif stage.augment is not None:
        steps = presets.get(stage.augment)
    else:
        steps = presets.of_config(cfg.augment)
    return presets.without(steps, cfg.augment.skip)


def stage_augmentation(cfg, stage, mask_bank=None):
    """``(image_layer, placement, mixing)`` of a stage: image-only steps and where they run,
    and the label-mixing steps (always tf.data; they need the labels). ``mask_bank`` goes to
    masks-mode ``OcclusionMask`` steps (``data.masks.load_mask_bank``)."""
    from keras_fgvc.augment import presets

    image_steps, mixing_steps = presets.split_label_mixing(stage_steps(cfg, stage))
    placement = presets.placement(stage.augment_runs_in or cfg.augment.runs_in)
    image_layer = presets.build(image_steps, name=f"{stage.name}_augment", mask_bank=mask_bank) if image_steps else None
    return image_layer, placement, presets.build_mixing(mixing_steps)


def class_counts(rows, column: str, num_classes: int) -> list[int] | None:
    """Training rows per class of an integer label column (None when it holds other targets)."""
    import numpy as np

    values = rows[column].to_numpy() if column in rows else np.zeros(0)
    if not len(values) or not np.issubdtype(values.dtype, np.number) or np.isnan(values.astype("float64")).any():
        return None
    labels = values.astype("int64")
    if (labels != values).any() or labels.min() < 0 or labels.max() >= num_classes:
        return None
    return np.bincount(labels, minlength=num_classes).tolist()


def loss_terms(stage, network: keras.Model, num_classes: int, counts: dict | None = None) -> list:
    """The stage's ``LossTerm`` list, each loss built from the registry with its output's context
    (``counts``: ``{output: class_counts}`` of the training rows, for class-balanced losses)."""
    from keras_fgvc.losses import build_loss
    from keras_fgvc.training.trainer import LossTerm

    terms = []
    for output, items in stage.losses.items():
        context = {"num_classes": num_classes, "dim": int(network.output[output].shape[-1]), "output": output,
                   "class_counts": (counts or {}).get(output)}
        for item in items:
            terms.append(LossTerm(output, item.name, float(item.weight), build_loss(item.name, item.kwargs, context)))
    return terms


def load_teacher(cfg, stage, model_fn):
    """The frozen teacher of a distillation stage: an earlier stage's model (built with that stage's
    model config) at its best weights, or a ``.keras`` model file (loaded in Keras' safe mode)."""
    if stage.teacher is None:
        return None
    by_name = {s.name: s for s in cfg.train.stages}
    if stage.teacher in by_name:
        teacher = model_fn(stage_config(cfg, by_name[stage.teacher]))
        teacher.load_weights(os.path.join(stage_folder(cfg, stage.teacher), BEST))
    else:
        from keras_fgvc.models.loading import load_keras_model

        teacher = load_keras_model(stage.teacher)  # frozen: its optimizer and losses are never used
    teacher.trainable = False
    return teacher


def _accuracy(y_true, y_pred):
    from keras import ops

    from keras_fgvc.losses.label_smoothing import is_soft_target

    # Mixed targets (CutMix in training) count their largest share as the label; integer labels
    # (validation) as they are: one metric object serves both traced steps.
    labels = ops.argmax(y_true, axis=-1) if is_soft_target(y_true, y_pred) else ops.reshape(y_true, (-1,))
    return ops.cast(ops.equal(ops.cast(labels, "int32"), ops.cast(ops.argmax(y_pred, axis=-1), "int32")), "float32")


def default_metrics(targets: dict) -> dict:
    """Accuracy on ``logits`` when a stage trains it (the metric every classifier logs)."""
    return {"logits": [keras.metrics.MeanMetricWrapper(_accuracy, name="accuracy")]} if "logits" in targets else {}


def _finished_stage(cfg, plan, stage, model_fn, folder) -> StageRun:
    """A stage an earlier run finished (resume=true): its model at the best weights, its record."""
    with open(os.path.join(folder, FINISHED)) as f:
        record = json.load(f)
    with plan.strategy.scope():
        model = model_fn(stage_config(cfg, stage))
    best = os.path.join(folder, BEST)
    if os.path.isfile(best):
        model.load_weights(best)
    print(f"stage '{stage.name}': finished in an earlier run ({os.path.join(folder, FINISHED)}); "
          "loaded its best weights, not training it again")
    return StageRun(stage, model, record["history"], folder, {**record["info"], "already_finished": True})


def train_stage(cfg, plan, stage, model_fn: Callable[[object], keras.Model], train_rows, val_rows, label: str,
                num_classes: int, metrics_fn: Callable[[dict], dict] | None = None, wandb_run=None,
                phase=None, mask_bank=None, epoch_metrics: Callable[[keras.Model], list] | None = None) -> StageRun:
    """Train one stage end to end (see the module docstring), or continue or skip it (``cfg.resume``).

    A stage whose backbone is pretrained trains with the fine-tuning recipe (``train.finetune``,
    training/finetune.py): first a head-only phase in its own folder ``<stage>_head``, then the
    stage from that phase's best weights with BatchNorm frozen, a lower backbone rate and warm-up.

    Args:
        cfg: the run's Config.
        plan: ``training.precision.RuntimePlan`` (strategy, jit).
        stage: the StageConfig to train.
        model_fn: ``config -> inference model``, called inside the strategy scope with the stage's
            config (``stage_config``: the model group with the stage's overrides).
        train_rows, val_rows: Tables of training / validation rows (val may be empty).
        label: the table column every trained output reads unless ``stage.targets`` names another.
        num_classes: classes of the heads (context for losses such as center loss).
        metrics_fn: ``targets -> {output: [metrics]}``; default: accuracy on ``logits``.
        wandb_run: a W&B run to log to (None: none; the recipe's head phase never logs there).
        mask_bank: occlusion masks for masks-mode ``OcclusionMask`` augmentation steps.
        epoch_metrics: ``inference model -> [callbacks]`` that add metrics to the epoch's logs
            (e.g. Hotel-ID's ``val_map5``); they run before every other callback, so the monitor,
            the checkpoints, history.csv and W&B see their values.
        phase: internal: the ``finetune.Phase`` this call trains (None: the stage's phases).

    Returns:
        StageRun with the inference model at its best epoch. ``info`` has ``epochs_run`` (all
        epochs of the stage, resumed ones included), ``resumed_from_epoch`` when it continued a
        backup, ``already_finished`` when an earlier run had finished it, and ``stopped_on_nan``
        (``{"epoch", "batch", "loss", "cause"}``, 0-based as in history.csv) when the loss or the
        weights turned NaN/inf and the stage stopped there. ``finetune`` says which recipe
        trained it and why, with the recipe's settings and phases; ``num_classes`` the heads' classes.

    Example:
        >>> run = train_stage(cfg, configure(cfg.runtime), stage, lambda c: build_model(c, 2), train, val,
        ...                   "mask", 2)  # doctest: +SKIP
        >>> run.info["best_epoch"], run.info.get("stopped_on_nan")  # doctest: +SKIP
    """
    from keras_fgvc.data.pipeline import PipelineSpec, build
    from keras_fgvc.models.build import training_model
    from keras_fgvc.training.optimizers import make_optimizer
    from keras_fgvc.training.trainer import Trainer

    folder = stage_folder(cfg, stage.name)
    if cfg.resume and is_finished(folder):
        return _finished_stage(cfg, plan, stage, model_fn, folder)
    if phase is None:
        from keras_fgvc.training.finetune import stage_phases

        *earlier, phase = stage_phases(cfg, stage)
        for head in earlier:  # the recipe's head phase, a stage of its own (folder, resume, finished.json)
            train_stage(cfg, plan, head.stage, model_fn, train_rows, val_rows, label, num_classes, metrics_fn,
                        phase=head, mask_bank=mask_bank, epoch_metrics=epoch_metrics)
        return dataclasses.replace(train_stage(cfg, plan, phase.stage, model_fn, train_rows, val_rows, label,
                                               num_classes, metrics_fn, wandb_run, phase=phase, mask_bank=mask_bank,
                                               epoch_metrics=epoch_metrics), stage=stage)
    check_no_interrupted_run(cfg, [stage])
    completed = interrupted_epochs(folder) if cfg.resume else 0
    if not completed:
        start_fresh(folder)
    os.makedirs(folder, exist_ok=True)
    # A SIGKILL in the middle of an atomic write leaves its temp file; nothing else writes here now.
    remove_partial_files(folder)
    remove_partial_files(os.path.join(folder, BACKUP_DIR))
    train_cfg = phase.train_config(stage_train_config(cfg, stage))
    # The stage's own resolved config (its model and train values; stage = its name): the run's
    # config.yaml is the latest command's, which may have run other stages.
    write_config(folder, to_dict(dataclasses.replace(stage_config(cfg, stage), train=train_cfg, stage=stage.name)))
    keras.utils.set_random_seed(cfg.seed)
    # data.batch_size is per replica; the global batch feeds the dataset and the LR rule.
    global_batch = cfg.data.batch_size * plan.replicas
    targets = {output: stage.targets.get(output, label) for output in stage.losses}
    # A margin head puts its margin on the label it is given (an input of the training view).
    has_margin_head = any(head != "softmax" for head in stage_config(cfg, stage).model.heads)
    margin_targets = [column for key, column in targets.items() if key.endswith("_logits")]
    label_input = (margin_targets[0] if margin_targets else label) if has_margin_head else None
    spec = PipelineSpec(cfg.data.image_size, global_batch, targets=targets, label_input=label_input,
                        channels=stage_config(cfg, stage).model.img_channels, resize=cfg.data.resize,
                        box_mode=cfg.data.box_mode, cache=cfg.data.cache,
                        cache_dir=cfg.data.cache_dir, seed=cfg.seed, num_classes=num_classes,
                        # Each replica takes a consecutive slice of the global batch: P classes x K each.
                        pk=(global_batch // stage.images_per_class, stage.images_per_class)
                        if stage.images_per_class else None,
                        # uint8 into the step: a quarter of float32's bytes to the device; the
                        # network's input casts (and model-placed augmentation takes uint8).
                        image_dtype="uint8")
    # One static batch shape where the step is compiled or split over devices (RuntimePlan.whole_batches).
    whole_batches = plan.whole_batches and len(train_rows) >= global_batch
    image_layer, placement, mixing = stage_augmentation(cfg, stage, mask_bank)
    train_ds = build(train_rows, dataclasses.replace(spec, drop_remainder=whole_batches), training=True,
                     augment=image_layer if placement == "data" else None, mixing=mixing)
    val_ds = build(val_rows, spec, training=False) if len(val_rows) else None
    # A P x K pass holds whole batches only (data/sampling.py: labelled rows // (P * K)), as does a
    # pass with drop_remainder.
    whole = stage.images_per_class is not None or whole_batches
    batches_per_pass = max(1, len(train_rows) // global_batch if whole else math.ceil(len(train_rows) / global_batch))
    steps = train_cfg.steps_per_epoch or batches_per_pass
    init_path = init_weights(cfg, stage)
    with plan.strategy.scope():
        model = model_fn(stage_config(cfg, stage))
        skipped = warm_start(model, init_path) if init_path else []
        frozen = freeze(model, stage.freeze)
        recipe_changes = phase.prepare(model)  # the recipe's BatchNorm mode
        network = training_model(model)
        trainer = Trainer(
            network, loss_terms(stage, network, num_classes,
                                 {o: class_counts(train_rows, c, num_classes) for o, c in targets.items()}),
            augment=image_layer if placement == "model" else None,
            teacher=load_teacher(cfg, stage, model_fn),
            metrics=(metrics_fn or default_metrics)(targets),
            name=f"{stage.name}_trainer",
        )
        optimizer = make_optimizer(train_cfg, steps, global_batch, lr_multipliers=phase.lr_multipliers(model))
        trainer.compile(optimizer=optimizer, jit_compile=plan.jit_compile,
                        steps_per_execution=min(plan.steps_per_execution, steps))
    monitor = train_cfg.monitor if val_ds is not None else train_cfg.monitor.removeprefix("val_")
    # Build the Trainer (its metrics and optimizer variables) here, from the dataset's element spec,
    # which reads no data. Keras would build it lazily inside the first traced train step, and a
    # tf.function that creates variables is traced twice (once to create them, once without): a
    # smoke stage of SqueezeNext-23v5 took 46 s to its first epoch that way and 28 s built here.
    # BackupAndRestore also loads into a built model. Under JAX, fit would build from a batch of a
    # throwaway iterator of the stream, drawing one shuffle permutation that a resumed run does not
    # draw (its order would then be one behind).
    # The global batch as the batch dimension: a margin head's JAX ops cannot trace a None one.
    batch = keras.tree.map_structure(lambda spec: tf.TensorSpec([global_batch, *spec.shape[1:]], spec.dtype),
                                     train_ds.element_spec)
    with plan.strategy.scope():
        trainer._symbolic_build(data_batch=batch)
    if completed:
        truncate_history(os.path.join(folder, HISTORY), completed)
        print(f"stage '{stage.name}': resuming {cfg.run_dir} after epoch {completed} of {train_cfg.epochs}")
    callbacks = stage_callbacks(train_cfg, folder, model, monitor, wandb_run, cfg.tracking.tensorboard,
                                resume=bool(completed), first=epoch_metrics(model) if epoch_metrics else ())
    # Always a repeated stream with explicit steps: one shuffle permutation per pass, drawn in order,
    # which a resumed run can replay (training/resume.py). Keras' own handling of a finite
    # dataset creates extra iterators at epoch ends, a count that is its implementation detail.
    stream = resumed_dataset(train_ds, completed, steps, batches_per_pass) if completed else train_ds.repeat()
    print(f"stage '{stage.name}': {train_cfg.epochs} epochs x {steps} steps of {global_batch} images "
          f"({len(train_rows)} train / {len(val_rows)} val rows)", flush=True)
    if not interactive():  # a log: one line per epoch that names the stage
        callbacks.append(EpochLine(stage.name, train_cfg.epochs))
    try:
        history = trainer.fit(
            stream,
            validation_data=val_ds,
            epochs=train_cfg.epochs,
            initial_epoch=completed,
            steps_per_epoch=steps,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles (seeded, replayable); Keras would only warn
            verbose=fit_verbosity(),
        )
    except Exception as error:
        from keras_fgvc.training.multi_worker import peer_failure

        stopped = peer_failure(error, plan.strategy, stage.name)  # another worker died: one line
        if stopped is None:
            raise
        raise stopped from None
    checkpoint = next(c for c in callbacks if isinstance(c, BestAndLastCheckpoint))
    guard = next(c for c in callbacks if isinstance(c, NanGuard))
    best = os.path.join(folder, BEST)
    if os.path.isfile(best):
        model.load_weights(best)  # the best epoch, not the last (and never NaN weights)
    full_history = read_history(os.path.join(folder, HISTORY)) if completed else history.history
    info = {
        "init_from": init_path, "warm_start_skipped": skipped, "frozen_layers": len(frozen),
        "epochs_run": len(full_history.get("loss", [])), "best_epoch": checkpoint.best_epoch,
        "monitor": monitor, "monitor_mode": monitor_mode(monitor), "best_value": checkpoint.best,
        "global_batch": global_batch, "steps_per_epoch": steps, "whole_batches": whole,
        "steps_per_execution": trainer.steps_per_execution, "finetune": {**phase.info, **recipe_changes},
        # What the report needs, besides the stage's config.yaml, to rebuild this model (tracking/stage_card.py).
        "num_classes": int(num_classes),
    }
    if completed:
        info["resumed_from_epoch"] = completed
    if guard.stopped:
        info["stopped_on_nan"] = guard.stopped
        kept = "no epoch finished before it, so no checkpoint was written" if checkpoint.last_epoch is None else (
            f"last.weights.h5 is epoch {checkpoint.last_epoch}, best.weights.h5 epoch {checkpoint.best_epoch}")
        what = (f"the loss became {guard.stopped['loss']}" if guard.stopped["cause"] == "loss"
                else "the weights became NaN/inf")
        print(f"warning: stage '{stage.name}': {what} at epoch {guard.stopped['epoch']}, batch {guard.stopped['batch']} "
              f"(0-based, as in history.csv); training stopped there and {kept}", file=sys.stderr)
    from keras_fgvc.tracking.run_dir import write_json

    # The marker first, then the backup goes: a kill in between leaves a finished stage.
    write_json(os.path.join(folder, FINISHED), {"info": info, "history": full_history})
    shutil.rmtree(os.path.join(folder, BACKUP_DIR), ignore_errors=True)
    return StageRun(stage, model, full_history, folder, info)
