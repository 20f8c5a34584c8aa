"""Backbone families, one file each; importing this package registers them all."""

from keras_fgvc.models.backbones import efficientnetv2  # noqa: F401
from keras_fgvc.models.backbones import hub  # noqa: F401
