"""keras_fgvc: fine-grained image classification and retrieval for Keras 3.

Subpackages (one concern each): ``config``, ``data``, ``augment``, ``models``, ``layers``,
``losses``, ``training``, ``evaluation``, ``export``, ``tracking``, ``pipelines``.
"""

__version__ = "0.1.0"

from keras_fgvc._versions import (  # noqa: E402
    check_keras_version,
    check_tensorflow,
    installed_keras_version,
    installed_tensorflow,
)

# Before anything imports Keras: older releases load crafted model files unsafely (see _versions).
check_keras_version(installed_keras_version())
# TensorFlow is not an install requirement (Kaggle's TPU image has tensorflow-cpu): say so here.
check_tensorflow(installed_tensorflow())
del check_keras_version, check_tensorflow, installed_keras_version, installed_tensorflow
