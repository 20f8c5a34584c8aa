"""Augmentation presets as data: a preset is a list of ``{layer_name: kwargs}`` steps.

Keeping presets as plain lists lets a config edit one step (``augment.steps``) without code.
A layer name resolves first in ``keras_fgvc.augment`` (our layers), then in ``keras.layers``
(core layers such as RandomFlip, RandomZoom, RandomRotation).
"""

import copy

import keras

from keras_fgvc.augment.tf_ops_layer import TensorFlowSequential

# Every preset stops before Normalize, unlike the seed recipes (which end with it): images stay in
# [0, 255] through augmentation and the model normalises them (models.build_model), so one preset
# works with any backbone's mean/std. Resize steps of the seeds are the data pipeline's job.
RED = [255, 0, 0]
_VALUE_RANGE = [0, 255]

# Zalo 5K (SYSTEMS.md section 5, seed 004 section 6.2): RandomFlip, RandomZoom, RandomWidth or
# RandomRotation in front of the backbone. Factors are the Keras-tutorial defaults the report used.
_FIVEK = [
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomZoom": {"height_factor": 0.1}},
    {"RandomRotation": {"factor": 0.05}},
]

# GhostNet on Stanford Cars (seed 001, best recipe C-50): flip 0.5, RandomAffine(25, 0.1, 0.9-1.1, 8),
# ColorJitter(0.2, 0.2, 0.2, 0.1). Keras' jitter takes saturation as s with multiplier s / (1 - s), so
# torchvision's [0.8, 1.2] is s in [0.8/1.8, 1.2/2.2]; its hue shift is factor / 2, so hue 0.1 -> 0.2.
_CARS = [
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomAffine": {"degrees": 25.0, "translate": 0.1, "scale": [0.9, 1.1], "shear": 8.0}},
    {"RandomColorJitter": {"value_range": _VALUE_RANGE, "brightness_factor": 0.2, "contrast_factor": 0.2,
                           "saturation_factor": [0.8 / 1.8, 1.2 / 2.2], "hue_factor": 0.2}},
]
# The thesis' tensor-level RandomErasing (p 0.5, scale 0.02-0.25, torchvision's black fill).
_CARS_ERASING = _CARS + [
    {"RandomApply": {"layer": {"RandomErasing": {"factor": [1.0, 1.0], "scale": [0.02, 0.25], "fill_value": 0.0,
                                                 "value_range": _VALUE_RANGE}}, "rate": 0.5}},
]

# Hotel-ID 2022 (seed 000 Table 1), in order and with its probabilities. RandomResizedCrop keeps the
# input size (the pipeline resizes first) with albumentations' default area 8-100%; the recipe's
# horizontal flip (p 0.5) right after it is folded into the crop box (same result, no extra pass).
# The small red squares use albumentations' CoarseDropout defaults (8 holes of 8x8 px); the large one
# simulates the test masks with sides in [size/4, size/2].
_HOTEL_OCCLUSION = {"OcclusionMask": {"mode": "rectangle", "size_range": [0.25, 0.5], "fill_value": RED, "rate": 1.0}}
# The seed also names occlusion with the real train_masks PNGs: "hotel_id_train_masks" draws the
# large occlusion from either the rectangle or a real mask (one occlusion per image, as the test
# images have); its masks step needs the driver's mask bank (``build(..., mask_bank=)``).
_HOTEL_REAL_MASK = {"OcclusionMask": {"mode": "masks", "fill_value": RED, "rate": 1.0}}
_HOTEL_TRAIN = [
    {"RandomResizedCrop": {"scale": [0.08, 1.0], "ratio": [0.75, 4.0 / 3.0], "horizontal_flip": 0.5}},
    {"OneOf": {"layers": [{"RandomBrightness": {"factor": 0.2, "value_range": _VALUE_RANGE}},
                          {"RandomContrast": {"factor": 0.2, "value_range": _VALUE_RANGE}},
                          {"RandomGamma": {"gamma_limit": [80, 120]}}], "rate": 0.5}},
    {"ShiftScaleRotate": {"shift_limit": 0.0625, "scale_limit": 0.1, "rotate_limit": 45, "rate": 0.3}},
    {"CoarseDropout": {"num_holes_range": [8, 8], "hole_height_range": [8, 8], "hole_width_range": [8, 8],
                       "fill_value": RED, "rate": 0.5}},
    _HOTEL_OCCLUSION,
]
_HOTEL_TRAIN_MASKS = _HOTEL_TRAIN[:-1] + [{"OneOf": {"layers": [_HOTEL_OCCLUSION, _HOTEL_REAL_MASK], "rate": 1.0}}]

# VIPriors 2020 (seed 002 section III-A): RandomResizedCrop area 8-100%, ratio 3/4-4/3, flip 0.5
# (folded into the crop), AutoAugment ImageNet policy, CutMix p 0.5 (a label-mixing step: see split_label_mixing).
_VIPRIORS = [
    {"RandomResizedCrop": {"scale": [0.08, 1.0], "ratio": [0.75, 4.0 / 3.0], "horizontal_flip": 0.5}},
    {"AutoAugment": {"policy": "imagenet"}},
    {"BatchCutMix": {"alpha": 1.0, "rate": 0.5, "label_mode": "one_hot"}},
]
# The margin fine-tuning (CE + triplet or ArcFace) trains two outputs on one label and ranks
# within a P x K batch, which a mixed label has no place in: the same steps less CutMix (the
# report does not say; ours).
_VIPRIORS_FINETUNE = _VIPRIORS[:-1]

# Squeeze-your-model (seed 003): level 0 no augmentation; level 1 "rotation, horizontal flip, scale,
# crop, hue, contrast, brightness, grey-scale" (the slides give no strengths: these are ours);
# level 2 is heavier: level 1 plus RandAugment(2, 9) and coarse dropout.
_SQUEEZE_1 = [
    {"RandomRotation": {"factor": 0.05}},
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomZoom": {"height_factor": 0.1}},
    {"RandomResizedCrop": {"scale": [0.5, 1.0]}},
    {"RandomHue": {"factor": 0.1, "value_range": _VALUE_RANGE}},
    {"RandomContrast": {"factor": 0.2, "value_range": _VALUE_RANGE}},
    {"RandomBrightness": {"factor": 0.2, "value_range": _VALUE_RANGE}},
    {"RandomGrayscale": {"factor": 0.1}},
]
_SQUEEZE_2 = _SQUEEZE_1 + [
    {"RandAugment": {"num_ops": 2, "magnitude": 9}},
    {"CoarseDropout": {"num_holes_range": [1, 4], "hole_height_range": [0.05, 0.15],
                       "hole_width_range": [0.05, 0.15], "fill_value": 0.0, "rate": 0.5}},
]

PRESETS: dict[str, list[dict]] = {
    "none": [],
    "fivek": _FIVEK,
    "cars": _CARS,
    "cars_erasing": _CARS_ERASING,
    "hotel_id_train": _HOTEL_TRAIN,
    "hotel_id_train_masks": _HOTEL_TRAIN_MASKS,
    "hotel_id_val": [_HOTEL_OCCLUSION],
    "hotel_id_test": [],
    "vipriors": _VIPRIORS,
    "vipriors_finetune": _VIPRIORS_FINETUNE,
    "squeeze_level0": [],
    "squeeze_level1": _SQUEEZE_1,
    "squeeze_level2": _SQUEEZE_2,
}


def get(name: str) -> list[dict]:
    """A deep copy of preset ``name``'s steps, so callers may edit them freely."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown augmentation preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def of_config(augment) -> list[dict]:
    """The steps an ``augment`` config group names: its explicit ``steps``, else its preset's (``skip`` not applied)."""
    return augment.steps if augment.steps is not None else get(augment.preset)


def without(steps: list[dict], skip) -> list[dict]:
    """``steps`` less those whose layer name is in ``skip`` (``augment.skip``: one ablation, one override).

    Example:
        >>> [next(iter(step)) for step in without(get("cars"), ["RandomAffine"])]
        ['RandomFlip', 'RandomColorJitter']
    """
    return [step for step in steps if next(iter(step)) not in set(skip)]


def resolve_layer(name: str):
    from keras_fgvc import augment

    cls = getattr(augment, name, None) or getattr(keras.layers, name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, keras.layers.Layer):
        raise KeyError(f"unknown augmentation layer {name!r} (looked in keras_fgvc.augment and keras.layers)")
    return cls


def needs_mask_bank(steps: list[dict]) -> bool:
    """True when a step (nested ones included) is a masks-mode ``OcclusionMask``."""
    def walk(spec):
        if isinstance(spec, dict):
            occlusion = spec.get("OcclusionMask")
            if isinstance(occlusion, dict) and occlusion.get("mode") == "masks":
                return True
            return any(walk(value) for value in spec.values())
        if isinstance(spec, (list, tuple)):
            return any(walk(item) for item in spec)
        return False

    return walk(list(steps))


def placement(runs_in: str) -> str:
    """Where image-only steps run, ``model`` or ``data``: ``auto`` is the model under TensorFlow and
    tf.data under another backend (our layers are TensorFlow ops; ``tf_ops_layer``)."""
    if runs_in != "auto":
        return runs_in
    return "model" if keras.backend.backend() == "tensorflow" else "data"


def build(steps: list[dict], name: str = "augment", mask_bank=None) -> keras.Sequential:
    """A ``keras.Sequential`` of the steps' layers; each step is ``{layer_name: kwargs}``.

    Args:
        steps: preset steps, e.g. ``get("hotel_id_train")``.
        name: the Sequential's name.
        mask_bank: array [N, h, w] handed to every ``OcclusionMask`` step with ``mode: masks``, also
            inside ``OneOf`` / ``RandomApply`` steps (configs cannot hold the array; the driver loads it
            with ``keras_fgvc.data.masks.load_mask_bank``). Other steps never see it.

    Example:
        >>> stack = build([{"OcclusionMask": {"mode": "masks", "rate": 0.5}}], mask_bank=bank)  # doctest: +SKIP
    """
    layers = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or len(step) != 1:
            raise ValueError(f"augmentation step {index} must be one {{layer: kwargs}} mapping, got {step!r}")
        (layer_name, kwargs), = step.items()
        kwargs = _with_mask_bank(layer_name, dict(kwargs or {}), mask_bank)
        layers.append(resolve_layer(layer_name)(**kwargs))
    # An empty Sequential cannot be called; "none"-style presets become one Identity layer.
    return TensorFlowSequential(layers or [keras.layers.Identity()], name=name)


def _with_mask_bank(layer_name: str, kwargs: dict, mask_bank) -> dict:
    """``kwargs`` with ``mask_bank`` given to masks-mode OcclusionMask steps, nested ones included.

    Nested preset steps of ``OneOf`` / ``RandomApply`` are built here (both accept layer objects and
    would build the same layer from the step), since their own step-to-layer path cannot pass an array.
    """
    if mask_bank is None:
        return kwargs
    if layer_name == "OcclusionMask" and kwargs.get("mode") == "masks" and kwargs.get("mask_bank") is None:
        kwargs["mask_bank"] = mask_bank

    def nested(spec):
        if isinstance(spec, dict) and len(spec) == 1 and "class_name" not in spec:
            (inner_name, inner_kwargs), = spec.items()
            return resolve_layer(inner_name)(**_with_mask_bank(inner_name, dict(inner_kwargs or {}), mask_bank))
        return spec

    if layer_name == "OneOf" and isinstance(kwargs.get("layers"), (list, tuple)):
        kwargs["layers"] = [nested(spec) for spec in kwargs["layers"]]
    if layer_name == "RandomApply" and "layer" in kwargs:
        kwargs["layer"] = nested(kwargs["layer"])
    return kwargs


def split_label_mixing(steps: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(image_steps, mixing_steps)``: label-mixing steps (BatchCutMix, BatchMixUp) need labels.

    Build the image steps with ``build`` (they run in the model or in tf.data); apply the mixing
    steps in tf.data on batched ``{"images", "labels"}`` dicts, after the image steps.
    """
    image_steps, mixing_steps = [], []
    for step in steps:
        (layer_name, _), = step.items()
        mixes = getattr(resolve_layer(layer_name), "mixes_labels", False)
        (mixing_steps if mixes else image_steps).append(copy.deepcopy(step))
    return image_steps, mixing_steps


def build_mixing(steps: list[dict]):
    """The label-mixing steps (``split_label_mixing``'s second list) as one callable on the
    ``{"images", "labels"}`` dict that tf.data maps, or None when there are none."""
    if not steps:
        return None
    layers = [resolve_layer(name)(**(kwargs or {})) for step in steps for name, kwargs in step.items()]

    def mixing(data, training=True):
        for layer in layers:
            data = layer(data, training=training)
        return data

    return mixing
