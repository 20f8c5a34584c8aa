"""Backbone families, one file each; importing this package registers them all."""

from keras_fgvc.models.backbones import efficientnetv2  # noqa: F401
from keras_fgvc.models.backbones import hub  # noqa: F401
from keras_fgvc.models.backbones import ghostnet  # noqa: F401
from keras_fgvc.models.backbones import squeezenext  # noqa: F401
from keras_fgvc.models.backbones import resnet  # noqa: F401
from keras_fgvc.models.backbones import inception_resnet  # noqa: F401
