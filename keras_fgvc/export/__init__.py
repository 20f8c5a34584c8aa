"""Exports: SavedModel with raw-bytes signatures (and more as they land)."""

from keras_fgvc.export.saved_model import export_saved_model  # noqa: F401
