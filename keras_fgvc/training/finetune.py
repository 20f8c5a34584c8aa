"""What a stage trains: ``freeze`` specs, and the fine-tuning recipe for pretrained backbones.

The recipe (``train.finetune``, docs/finetuning.md) exists because fine-tuning a pretrained
backbone the plain way can ruin it at inference while training accuracy looks perfect. On the
real 5K set with an ImageNet MobileNetV2 hub module, SGD 0.01 on everything gave held-out
accuracy 0.471 (mask) against 0.983 for the frozen backbone with a trained head. The cause is
BatchNorm: in training mode it normalises with the statistics of each batch of the new
(greyscale, differently lit) data, while the moving statistics it uses at inference follow with
momentum 0.99-0.999, i.e. hardly at all in a few hundred steps, so at inference the network
sees activations scaled for ImageNet. Keras' transfer-learning guide keeps BatchNorm in
inference mode when it fine-tunes; timm and torchvision recipes add a lower backbone learning
rate and a warm-up. So for a stage whose backbone is pretrained the engine runs two phases:

1. ``<stage>_head`` (its own stage folder, resumable on its own): the backbone frozen, the head
   (neck + classifier) trained for ``head_epochs``, so the randomly initialised head no longer
   sends large gradients into the pretrained features when they unfreeze;
2. ``<stage>`` itself, from phase 1's best weights: the backbone trains with its BatchNorm layers
   in inference mode (``batchnorm=frozen``; or ``batchnorm=train`` with ``bn_momentum``), at
   ``backbone_lr_multiplier`` times the head's learning rate, after a ``warmup_epochs`` warm-up.

``recipe=auto`` chooses it when the stage's backbone is pretrained (``model.weights`` set or
``backbone=hub``) and trains (``freeze`` is not ``backbone``): every such stage, also one that
starts from an earlier stage of the same model (a stage run after a recipe stage still has the
pretrained BatchNorm statistics, which a plain stage would then invalidate; and its head was
trained on the earlier stage's targets, hence its own head phase). ``recipe=plain`` trains the
stage as declared. The test that shows both: tests/training/test_finetune_recipe.py.
"""

import dataclasses
import os
import re
from dataclasses import dataclass, field

import keras

from keras_fgvc.errors import UserError

HEAD_SUFFIX = "_head"

# "block3_...", "stage2_block1_...", "stage1_unit2_...", keras.applications' "block1a_...".
_BLOCK = re.compile(r"^(.*?(?:block|unit)\d+[a-z]?)_")


def _weight_layers(model):
    """Every layer of ``model`` that owns weights, nested models flattened, in graph order."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, keras.Model) and layer.weights:
            yield layer


def freeze(model: keras.Model, spec: str) -> list[str]:
    """Apply a stage's ``freeze`` to ``model``; returns the names of the frozen layers.

    ``backbone`` freezes the whole backbone; ``backbone_except_last_<N>`` keeps its last N blocks
    (and the layers after them) training, the usual fine-tuning recipe for pretrained backbones.
    Frozen BatchNorm layers run in inference mode (Keras 3 semantics).
    """
    if spec == "none":
        return []
    backbone = model.get_layer("backbone")
    if spec == "backbone":
        backbone.trainable = False
        return [layer.name for layer in _weight_layers(backbone)]
    keep_blocks = int(spec.rsplit("_", 1)[1])
    layers = list(_weight_layers(backbone))
    blocks = list(dict.fromkeys(m.group(1) for m in map(_BLOCK.match, (layer.name for layer in layers)) if m))
    if not blocks:
        raise UserError(f"freeze={spec}: backbone '{backbone.name}' has no layers named by block; use freeze=backbone")
    kept = set(blocks[-keep_blocks:])
    last_block_index = max(i for i, layer in enumerate(layers) if _BLOCK.match(layer.name))
    frozen = []
    for index, layer in enumerate(layers):
        match = _BLOCK.match(layer.name)
        trainable = (match.group(1) in kept) if match else index > last_block_index
        if not trainable:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def is_pretrained(model_cfg) -> bool:
    """Whether a model config's backbone starts from pretrained weights (a weights file, a hub module)."""
    return model_cfg.backbone == "hub" or bool(model_cfg.weights)


def choose_recipe(model_cfg, stage, finetune_cfg) -> tuple[str, str]:
    """``(recipe, why)``: "pretrained" or "plain" for ``stage`` with its model config (stage
    overrides applied) and its ``train.finetune``; ``why`` is recorded in the stage's info."""
    if stage.freeze == "backbone" or not model_cfg.trainable_backbone:
        return "plain", "the backbone is frozen in this stage: nothing to fine-tune"
    if finetune_cfg.recipe == "plain":
        return "plain", "train.finetune.recipe=plain"
    if finetune_cfg.recipe == "pretrained":
        return "pretrained", "train.finetune.recipe=pretrained"
    if is_pretrained(model_cfg):
        source = "backbone=hub" if model_cfg.backbone == "hub" else f"model.weights={model_cfg.weights}"
        return "pretrained", f"train.finetune.recipe=auto and the backbone is pretrained ({source})"
    return "plain", "train.finetune.recipe=auto and the backbone is not pretrained (random init)"


def apply_batchnorm_policy(backbone: keras.Model, batchnorm: str, bn_momentum=None) -> dict:
    """Put the backbone's BatchNorm layers into the recipe's mode; returns what it changed.

    ``frozen``: Keras BatchNormalization layers get ``trainable=False``, which in Keras 3 makes
    them run in inference mode (moving statistics used, never updated; scale and offset fixed);
    a ``HubBackbone`` gets ``inference_mode=True`` (the SavedModel has no per-layer switch: the
    whole module runs as at inference, its variables, BatchNorm scales and offsets included, still
    train). ``train`` with ``bn_momentum``: the Keras layers' momentum is set.
    """
    from keras_fgvc.models.backbones.hub import HubBackbone

    layers = list(backbone._flatten_layers(include_self=False, recursive=True))
    batchnorms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    hubs = [layer for layer in layers if isinstance(layer, HubBackbone)]
    if batchnorm == "frozen":
        for layer in batchnorms:
            layer.trainable = False
        for layer in hubs:
            layer.inference_mode = True
        return {"batchnorm_layers_frozen": len(batchnorms), "hub_modules_in_inference_mode": len(hubs)}
    if bn_momentum is not None:
        if hubs:
            raise UserError("train.finetune.bn_momentum: a hub module's BatchNorm momentum is fixed in its "
                            "SavedModel graph; use train.finetune.batchnorm=frozen")
        for layer in batchnorms:
            layer.momentum = float(bn_momentum)
    return {"batchnorm_layers_momentum_set": len(batchnorms) if bn_momentum is not None else 0}


@dataclass
class Phase:
    """One training run of a stage: ``plain`` (the stage as declared), or the pretrained recipe's
    ``head`` or ``finetune`` phase. ``stage`` is the StageConfig this phase trains."""

    kind: str  # plain | head | finetune
    stage: object
    finetune: object  # the stage's FinetuneConfig
    info: dict = field(default_factory=dict)

    def train_config(self, train_cfg):
        """The phase's TrainConfig: the fine-tuning phase has the recipe's warm-up."""
        if self.kind == "finetune":
            return dataclasses.replace(train_cfg, warmup_epochs=self.finetune.warmup_epochs)
        return train_cfg

    def prepare(self, model: keras.Model) -> dict:
        """After ``freeze``: the fine-tuning phase puts the backbone's BatchNorm into its mode."""
        if self.kind != "finetune":
            return {}
        return apply_batchnorm_policy(model.get_layer("backbone"), self.finetune.batchnorm, self.finetune.bn_momentum)

    def lr_multipliers(self, model: keras.Model) -> list:
        """``[(variables, multiplier)]`` for ``make_optimizer``: the backbone's lower rate."""
        if self.kind != "finetune":
            return []
        return [(model.get_layer("backbone").trainable_variables, self.finetune.backbone_lr_multiplier)]


def head_stage_name(name: str) -> str:
    return name + HEAD_SUFFIX


def stage_phases(cfg, stage) -> list[Phase]:
    """The phases ``train_stage`` runs for ``stage``: ``[plain]``, ``[finetune]`` (recipe without a
    head phase) or ``[head, finetune]``; the last one trains in the stage's own folder."""
    from keras_fgvc.training.callbacks import BEST
    from keras_fgvc.training.stages import init_weights, stage_config, stage_folder, stage_train_config

    finetune = stage_train_config(cfg, stage).finetune
    recipe, why = choose_recipe(stage_config(cfg, stage).model, stage, finetune)
    info = {"recipe": recipe, "why": why}
    if recipe == "plain":
        return [Phase("plain", stage, finetune, info)]
    info.update(head_epochs=finetune.head_epochs, batchnorm=finetune.batchnorm, bn_momentum=finetune.bn_momentum,
                backbone_lr_multiplier=finetune.backbone_lr_multiplier, warmup_epochs=finetune.warmup_epochs)
    if not finetune.head_epochs:
        return [Phase("finetune", stage, finetune, {**info, "phase": "finetune"})]
    # The head phase starts where the stage would have (resolved here: "previous" means the
    # stage before the declared one), the stage itself from the head phase's best weights.
    start = init_weights(cfg, stage) or "none"
    head_name = head_stage_name(stage.name)
    head = dataclasses.replace(stage, name=head_name, init_from=start, epochs=finetune.head_epochs, freeze="backbone")
    tuned = dataclasses.replace(stage, init_from=os.path.join(stage_folder(cfg, head_name), BEST))
    phases = {"head": head_name, "finetune": stage.name}
    return [Phase("head", head, finetune, {**info, "phase": "head", "phases": phases}),
            Phase("finetune", tuned, finetune, {**info, "phase": "finetune", "phases": phases,
                                                "pretrained_from": None if start == "none" else start})]
