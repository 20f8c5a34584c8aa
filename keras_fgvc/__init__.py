"""keras_fgvc: fine-grained image classification and retrieval for Keras 3.

Subpackages (one concern each): ``config``, ``data``, ``augment``, ``models``, ``layers``,
``losses``, ``training``, ``evaluation``, ``export``, ``tracking``, ``pipelines``.
"""

__version__ = "0.1.0"
