"""Public custom layers (``keras_fgvc.layers``)."""

from keras_fgvc.layers.margin import ArcFace, CosFace  # noqa: F401
