"""One registry that maps config names to backbone builders (DESIGN.md convention 7).

A backbone builder is ``builder(input_shape, *, option=default, ...) -> keras.Model``. Its options
are explicit keywords with defaults, never a ``**kwargs`` catch-all: an option a builder does not
take is then a ``TypeError`` from Python, and ``builder_options`` can list the valid ones for a config
error. ``register_backbone`` refuses builders that break this. The model maps an
image batch to features: a 4-D feature map, or a 2-D pre-logits vector for families whose
published head ends in a 1x1 conv (GhostNet). ``build_model`` adds the neck and heads.

``input_scale`` says what pixel range the builder's model expects, so that every model
built by ``build_model`` takes float pixels in [0, 255] and normalises inside (``model.input_scale``
overrides it per config, e.g. for a hub module that expects [-1, 1]):
  - "raw":          the backbone normalises itself (keras.applications with preprocessing);
  - "unit":         pixels / 255 in [0, 1] (TF-Hub image models);
  - "symmetric":    pixels / 127.5 - 1 in [-1, 1] (MobileNet/Inception-style ports);
  - "standardize":  (pixels / 255 - mean) / std with the config's mean/std (ImageNet by default).
"""

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import keras

INPUT_SCALES = ("raw", "unit", "symmetric", "standardize")


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
        _check_signature(name, builder)
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


def builder_options(name: str) -> dict[str, Any]:
    """The keyword options backbone ``name``'s builder accepts besides ``input_shape``, with defaults.

    Example:
        >>> builder_options("ghostnet_100")
        {'img_channels': None, 'out_channels': 1280}
    """
    parameters = list(inspect.signature(get_backbone(name).builder).parameters.values())[1:]
    return {p.name: p.default for p in parameters}


def input_channels(input_shape, img_channels=None) -> int:
    """Channels of a builder's input: ``img_channels`` if given (it must then agree with a 3-D
    ``input_shape``), else ``input_shape[2]``, else 3."""
    shape_channels = input_shape[2] if len(input_shape) > 2 else None
    if img_channels and shape_channels and img_channels != shape_channels:
        raise ValueError(f"img_channels={img_channels} contradicts input_shape {tuple(input_shape)}")
    return img_channels or shape_channels or 3


def _check_signature(name, builder):
    parameters = list(inspect.signature(builder).parameters.values())
    if not parameters or parameters[0].name != "input_shape":
        raise TypeError(f"backbone builder {name!r} must take input_shape as its first argument")
    for p in parameters[1:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is p.empty:
            raise TypeError(
                f"backbone builder {name!r}: option {p} must be an explicit keyword with a default "
                "(no *args/**kwargs), so unknown options fail and builder_options can list them"
            )


def _import_families():
    # Importing the package runs every family's @register_backbone decorators.
    from keras_fgvc.models import backbones  # noqa: F401
