"""One registry that maps config names to backbone builders (DESIGN.md convention 7).

A backbone builder is ``builder(input_shape, **kwargs) -> keras.Model``. The model maps an
image batch to features: a 4-D feature map, or a 2-D pre-logits vector for families whose
published head ends in a 1x1 conv (GhostNet). ``build_model`` adds the neck and heads.

``input_scale`` says what pixel range the builder's model expects, so that every model
built by ``build_model`` takes float pixels in [0, 255] and normalises inside:
  - "raw":          the backbone normalises itself (keras.applications with preprocessing);
  - "unit":         pixels / 255 in [0, 1] (TF-Hub image models);
  - "standardize":  (pixels / 255 - mean) / std with the config's mean/std (ImageNet by default).
"""

from dataclasses import dataclass
from typing import Callable

import keras

INPUT_SCALES = ("raw", "unit", "standardize")


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    builder: Callable[..., keras.Model]
    input_scale: str


_BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(name: str, input_scale: str = "standardize"):
    """Decorator: ``@register_backbone("ghostnet_100")`` above a builder function."""
    if input_scale not in INPUT_SCALES:
        raise ValueError(f"input_scale must be one of {INPUT_SCALES}, got {input_scale!r}")

    def decorate(builder):
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = BackboneEntry(name, builder, input_scale)
        return builder

    return decorate


def get_backbone(name: str) -> BackboneEntry:
    _import_families()
    try:
        return _BACKBONES[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(_BACKBONES))}"
        ) from None


def list_backbones() -> list[str]:
    _import_families()
    return sorted(_BACKBONES)


def _import_families():
    # Importing the package runs every family's @register_backbone decorators.
    from keras_fgvc.models import backbones  # noqa: F401
