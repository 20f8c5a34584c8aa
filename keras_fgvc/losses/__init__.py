"""Public losses (``keras_fgvc.losses``)."""

from keras_fgvc.losses.margin import ArcFaceLoss, CosFaceLoss  # noqa: F401
