"""Every name a config gives is checked against its registry when the config is composed.

Data formats, backbones (and their builder options), heads, augmentation presets and layers, losses (and their
options), optimiser and schedule names in stage overrides, stage names, ``init_from``, ``freeze``
and teachers: a wrong one is a one-line ConfigError before any file is written, instead of a
KeyError traceback halfway through a run.
"""

import dataclasses
import difflib
import os
import re

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from keras_fgvc.config.schema import CHOICES, PIPELINE_STEPS, RANGES, ModelConfig, TrainConfig
from keras_fgvc.errors import UserError

FREEZE = re.compile(r"^(none|backbone|backbone_except_last_([1-9][0-9]*))$")
# Outputs of a training view that a loss may read besides the margin heads' "<head>_logits".
BASE_OUTPUTS = ("logits", "embedding", "pre_logits")
# Stage-level overrides may set these train.* keys (everything but the stage list itself).
TRAIN_OVERRIDABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "stages")
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig))


def _error(message):
    from keras_fgvc.config.validate import ConfigError

    return ConfigError(message)


def _unknown(kind: str, key: str, value, known) -> Exception:
    known = sorted(map(str, known))
    hint = difflib.get_close_matches(str(value), known, n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return _error(f"config key '{key}': unknown {kind} '{value}'; known: {', '.join(known)}.{suggestion}")


def check_backbone(model_cfg, group: str = "model"):
    from keras_fgvc.models.registry import builder_options, list_backbones

    if model_cfg.backbone not in list_backbones():
        raise _unknown("backbone", f"{group}.backbone", model_cfg.backbone, list_backbones())
    if model_cfg.backbone == "hub":
        import keras

        if keras.backend.backend() != "tensorflow":
            raise _error(f"config key '{group}.backbone' = 'hub': TF-Hub modules are TensorFlow graphs and need "
                         f"KERAS_BACKEND=tensorflow (this process runs {keras.backend.backend()})")
    accepted = builder_options(model_cfg.backbone)
    for option in model_cfg.backbone_kwargs:
        if option not in accepted:
            raise _unknown(f"option of backbone '{model_cfg.backbone}'", f"{group}.backbone_kwargs.{option}", option,
                           accepted or ["(none)"])


def check_augment(preset, steps, key: str):
    from keras_fgvc.augment import presets

    if steps is None:
        if preset not in presets.PRESETS:
            raise _unknown("augmentation preset", key, preset, presets.PRESETS)
        return
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or len(step) != 1:
            raise _error(f"config key '{key}' step {index}: give one {{layer: kwargs}} mapping, got {step!r}")
        (layer,) = step
        try:
            presets.resolve_layer(layer)
        except KeyError:
            raise _error(f"config key '{key}' step {index}: unknown augmentation layer '{layer}' "
                         "(looked in keras_fgvc.augment and keras.layers)") from None


# Steps that convert to HSV (tf.image.rgb_to_hsv needs exactly 3 channels).
COLOUR_STEPS = ("RandomColorJitter", "RandomHue", "RandomSaturation")


def check_skip(cfg):
    """Every ``augment.skip`` name is a step of the augmentation it edits (a typo would skip nothing),
    and a greyscale model keeps no step that needs colour (it would fail at the first batch)."""
    from keras_fgvc.augment import presets

    steps = presets.of_config(cfg.augment)
    present = [next(iter(step)) for step in steps]
    unknown = [name for name in cfg.augment.skip if name not in present]
    if unknown:
        source = "augment.steps" if cfg.augment.steps is not None else f"preset '{cfg.augment.preset}'"
        raise _error(f"config key 'augment.skip': {', '.join(map(repr, unknown))} is not a step of {source}; "
                     f"its steps: {', '.join(present) or 'none'}")
    colour = [name for name in present if name in COLOUR_STEPS and name not in cfg.augment.skip]
    if cfg.model.img_channels == 1 and colour:
        raise _error(f"config key 'model.img_channels' = 1: augmentation step {colour[0]} needs colour images; "
                     f"add augment.skip=[{','.join(colour)}]")


def check_overrides(overrides: dict, key: str, schema, group: str, allowed_keys):
    """A stage's ``train``/``model`` overrides: known keys, right types, allowed choices; returns the merged group."""
    for name in overrides:
        if name not in allowed_keys:
            raise _unknown(f"{group} key", f"{key}.{name}", name, allowed_keys)
    try:
        merged = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(overrides)))
    except OmegaConfBaseException as error:
        raise _error(f"config key '{key}.{getattr(error, 'key', '?')}': {str(error).splitlines()[0]}") from None
    for name in overrides:
        allowed = CHOICES.get(f"{group}.{name}")
        values = getattr(merged, name)
        if allowed and any(v not in allowed for v in (values if isinstance(values, list) else [values])):
            raise _error(f"config key '{key}.{name}' = {overrides[name]!r}; choose one of: {', '.join(map(str, allowed))}")
        limits = RANGES.get(f"{group}.{name}")
        if limits and isinstance(values, (int, float)) and not isinstance(values, bool) and not limits.holds(values):
            raise _error(f"config key '{key}.{name}' = {values!r}: must be {limits.describe()}")
    return merged


def loss_outputs(heads) -> list[str]:
    from keras_fgvc.models.heads import output_key

    return [*BASE_OUTPUTS, *(output_key(head) for head in heads if head != "softmax")]


def check_finetune(cfg, stage, key: str):
    """The fine-tuning recipe settings a stage trains with (``train.finetune`` + its overrides)."""
    from keras_fgvc.training.finetune import HEAD_SUFFIX, choose_recipe
    from keras_fgvc.training.stages import stage_config, stage_train_config

    train = stage_train_config(cfg, stage)
    finetune, where = train.finetune, f"{key}.train.finetune" if "finetune" in stage.train else "train.finetune"
    for name in ("recipe", "batchnorm"):
        allowed = CHOICES[f"train.finetune.{name}"]
        if getattr(finetune, name) not in allowed:
            raise _error(f"config key '{where}.{name}' = {getattr(finetune, name)!r}; "
                         f"choose one of: {', '.join(allowed)}")
    for name, low in (("head_epochs", 0), ("warmup_epochs", 0)):
        if getattr(finetune, name) < low:
            raise _error(f"config key '{where}.{name}' = {getattr(finetune, name)}: must be >= {low}")
    if not finetune.backbone_lr_multiplier > 0:
        raise _error(f"config key '{where}.backbone_lr_multiplier' = {finetune.backbone_lr_multiplier}: must be > 0 "
                     "(to keep the backbone fixed use freeze: backbone)")
    model_cfg = stage_config(cfg, stage).model
    if finetune.bn_momentum is not None:
        if not 0 < finetune.bn_momentum < 1:
            raise _error(f"config key '{where}.bn_momentum' = {finetune.bn_momentum}: give a momentum in (0, 1)")
        if finetune.batchnorm != "train":
            raise _error(f"config key '{where}.bn_momentum' sets the momentum of BatchNorm layers that train; "
                         f"set {where}.batchnorm=train too (with batchnorm=frozen they do not update)")
        if model_cfg.backbone == "hub":
            raise _error(f"config key '{where}.bn_momentum': a hub module's BatchNorm momentum is fixed in its "
                         "SavedModel graph; use batchnorm=frozen")
    recipe, _ = choose_recipe(model_cfg, stage, finetune)
    if recipe == "pretrained":
        if train.schedule == "plateau" and finetune.warmup_epochs > 0:
            raise _error(f"config key '{where}.warmup_epochs' = {finetune.warmup_epochs}: stage '{stage.name}' "
                         "fine-tunes a pretrained backbone with train.schedule=plateau, which cannot warm up; "
                         "set warmup_epochs=0 or another schedule")
        if finetune.head_epochs and stage.name + HEAD_SUFFIX in [s.name for s in cfg.train.stages]:
            raise _error(f"config key '{key}.name': stage '{stage.name}{HEAD_SUFFIX}' is the name of stage "
                         f"'{stage.name}''s head phase (the fine-tuning recipe); rename it")


def check_pk(cfg, stage, key: str):
    """A stage's ``images_per_class`` K: K >= 2 (a batch-hard triplet needs a positive) and
    ``data.batch_size`` a multiple of K with P = batch / K >= 2 classes (it needs a negative)."""
    k = stage.images_per_class
    if k is None:
        return
    batch = cfg.data.batch_size
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or batch % k or batch // k < 2:
        raise _error(f"config key '{key}.images_per_class' = {k!r}: give K >= 2 that divides data.batch_size "
                     f"= {batch} into P >= 2 classes per batch")


def check_stages(cfg):
    from keras_fgvc.losses import check_loss
    from keras_fgvc.models.build import check_heads

    stages = cfg.train.stages
    names = [stage.name for stage in stages]
    if not stages:
        raise _error("config key 'train.stages' is empty; a pipeline needs at least one stage")
    for position, stage in enumerate(stages):
        key = f"train.stages.{position}"
        if not stage.name or stage.name == "all" or names.count(stage.name) > 1:
            raise _error(f"config key '{key}.name' = {stage.name!r}: stage names must be unique, non-empty and not 'all'")
        earlier = names[:position]
        if stage.init_from not in ("previous", "none", *earlier) and not os.path.isfile(stage.init_from):
            raise _error(f"config key '{key}.init_from' = {stage.init_from!r}: give previous, none, an earlier stage "
                         f"({', '.join(earlier) or 'none before this one'}) or an existing weights file")
        if stage.epochs is not None and stage.epochs < 1:
            raise _error(f"config key '{key}.epochs' = {stage.epochs}: must be at least 1")
        if not FREEZE.match(stage.freeze):
            raise _error(f"config key '{key}.freeze' = {stage.freeze!r}; give none, backbone or backbone_except_last_<N>")
        check_overrides(stage.train, f"{key}.train", TrainConfig, "train", TRAIN_OVERRIDABLE)
        model_cfg = dataclasses.replace(cfg.model, **stage.model)
        check_overrides(stage.model, f"{key}.model", ModelConfig, "model", MODEL_KEYS)
        if stage.model:
            check_backbone(model_cfg, f"{key}.model")
            check_heads(model_cfg.heads)
        if stage.augment is not None or stage.augment_steps is not None:
            check_augment(stage.augment, stage.augment_steps, f"{key}.augment")
        if stage.augment_runs_in not in (None, *CHOICES["augment.runs_in"]):
            raise _error(f"config key '{key}.augment_runs_in' = {stage.augment_runs_in!r}; "
                         f"choose one of: {', '.join(CHOICES['augment.runs_in'])}")
        check_placement(stage.augment_runs_in, f"{key}.augment_runs_in")
        outputs = loss_outputs(model_cfg.heads)
        if not stage.losses:
            raise _error(f"config key '{key}.losses' is empty; name at least one loss")
        for output, terms in stage.losses.items():
            if output not in outputs:
                raise _unknown("model output", f"{key}.losses.{output}", output, outputs)
            for index, term in enumerate(terms):
                try:
                    check_loss(term.name, term.kwargs)
                except UserError as error:
                    raise _error(f"config key '{key}.losses.{output}.{index}': {error}") from None
        for output in stage.targets:
            if output not in stage.losses:
                raise _error(f"config key '{key}.targets.{output}': no loss is trained on output '{output}'")
        check_finetune(cfg, stage, key)
        check_pk(cfg, stage, key)
        if stage.teacher is not None and stage.teacher not in earlier and not os.path.exists(stage.teacher):
            raise _error(f"config key '{key}.teacher' = {stage.teacher!r}: give an earlier stage "
                         f"({', '.join(earlier) or 'none before this one'}) or an existing model file")
    steps = PIPELINE_STEPS.get(cfg.pipeline, ())
    for step in steps:
        if step in names:
            raise _error(f"config key 'train.stages': stage name '{step}' is pipeline {cfg.pipeline}'s own step; "
                         "rename the stage")
    if cfg.stage != "all" and cfg.stage not in (*names, *steps):
        raise _unknown(f"stage of pipeline {cfg.pipeline}", "stage", cfg.stage, ["all", *names, *steps])


def check_placement(runs_in, key: str):
    """``model`` placement needs the TensorFlow backend: the augmentation layers are TensorFlow ops."""
    import keras

    if runs_in == "model" and keras.backend.backend() != "tensorflow":
        raise _error(f"config key '{key}' = 'model': the augmentation layers are TensorFlow ops and cannot run in "
                     f"a {keras.backend.backend()} training step; set {key}=data (or auto)")


def check_distribute(kind: str):
    """Under JAX every strategy but none is DataParallel over the visible devices
    (``training.precision``); several hosts need jax.distributed, which the runtime does not set up."""
    import keras

    if kind == "multi_worker" and keras.backend.backend() != "tensorflow":
        raise _error(f"config key 'runtime.distribute' = 'multi_worker' is TensorFlow's MultiWorkerMirroredStrategy; "
                     f"under {keras.backend.backend()} use auto (DataParallel over this host's devices)")


def check_names(cfg):
    """Raise ConfigError for the first name in ``cfg`` that its registry does not know."""
    from keras_fgvc.data.sources import FORMATS
    from keras_fgvc.models.build import check_heads

    from keras_fgvc.data.decode import BOX_MODES, RESIZE_POLICIES

    if cfg.data.format not in FORMATS:
        raise _unknown("data format", "data.format", cfg.data.format, FORMATS)
    from keras_fgvc.data.sources import check_options

    check_options(cfg.data.format, dict(cfg.data.source_options))
    if cfg.data.resize not in RESIZE_POLICIES:
        raise _unknown("resize policy", "data.resize", cfg.data.resize, RESIZE_POLICIES)
    if cfg.data.box_mode not in BOX_MODES:
        raise _unknown("box mode", "data.box_mode", cfg.data.box_mode, BOX_MODES)
    check_backbone(cfg.model)
    check_heads(cfg.model.heads)
    check_augment(cfg.augment.preset, cfg.augment.steps, "augment.preset" if cfg.augment.steps is None else "augment.steps")
    check_skip(cfg)
    check_placement(cfg.augment.runs_in, "augment.runs_in")
    check_distribute(cfg.runtime.distribute)
    check_stages(cfg)
