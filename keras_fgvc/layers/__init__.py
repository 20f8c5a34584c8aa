"""Public custom layers (``keras_fgvc.layers``)."""
