"""Augmentation presets as data: a preset is a list of ``{layer_name: kwargs}`` steps.

Keeping presets as plain lists lets a config edit one step (``augment.steps``) without code.
A layer name resolves first in ``keras_fgvc.augment`` (our layers), then in ``keras.layers``
(core layers such as RandomFlip, RandomZoom, RandomRotation).
"""

import copy

import keras

# Zalo 5K (SYSTEMS.md section 5, seed 004 section 6.2): RandomFlip, RandomZoom, RandomWidth or
# RandomRotation in front of the backbone. Factors are the Keras-tutorial defaults the report used.
PRESETS: dict[str, list[dict]] = {
    "none": [],
    "fivek": [
        {"RandomFlip": {"mode": "horizontal"}},
        {"RandomZoom": {"height_factor": 0.1}},
        {"RandomRotation": {"factor": 0.05}},
    ],
}


def get(name: str) -> list[dict]:
    """A deep copy of preset ``name``'s steps, so callers may edit them freely."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown augmentation preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def resolve_layer(name: str):
    from keras_fgvc import augment

    cls = getattr(augment, name, None) or getattr(keras.layers, name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, keras.layers.Layer):
        raise KeyError(f"unknown augmentation layer {name!r} (looked in keras_fgvc.augment and keras.layers)")
    return cls


def build(steps: list[dict], name: str = "augment") -> keras.Sequential:
    """A ``keras.Sequential`` of the steps' layers; each step is ``{layer_name: kwargs}``."""
    layers = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or len(step) != 1:
            raise ValueError(f"augmentation step {index} must be one {{layer: kwargs}} mapping, got {step!r}")
        (layer_name, kwargs), = step.items()
        layers.append(resolve_layer(layer_name)(**(kwargs or {})))
    return keras.Sequential(layers, name=name)
