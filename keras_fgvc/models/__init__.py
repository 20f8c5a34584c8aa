"""Models: backbones (one file per family, registered by name), necks, heads and ``build_model``."""

from keras_fgvc.models.backbones.hub import HubBackbone, save_as_hub_module  # noqa: F401
from keras_fgvc.models.backbones.ghostnet import GhostNet  # noqa: F401
from keras_fgvc.models.backbones.resnet import ResNet  # noqa: F401
from keras_fgvc.models.backbones.squeezenext import SqueezeNext  # noqa: F401
from keras_fgvc.models.build import build_model, head_keys, training_model  # noqa: F401
from keras_fgvc.models.registry import get_backbone, list_backbones, register_backbone  # noqa: F401
