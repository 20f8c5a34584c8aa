"""The one way keras_fgvc loads a whole Keras model file: Keras' ``safe_mode=True``.

Safe mode refuses to deserialise Python code stored in a model file (a ``Lambda`` layer's
function); with it off, opening a ``.keras`` file from someone else can run their code. Every
``load_model`` call in the package goes through :func:`load_keras_model` (a test in
``tests/reliability/test_security.py`` greps for others), and a refusal is a one-line
``UserError`` naming the file, not a Keras traceback.
"""

import os

from keras_fgvc.errors import UserError

# What Keras says (3.14 - 3.15) when safe mode refuses a Lambda layer or a serialised Python lambda.
_UNSAFE_MARKERS = ("arbitrary code execution", "safe_mode=False", "enable_unsafe_deserialization")


def load_keras_model(path, compile=False):
    """``keras.saving.load_model(path, compile=compile, safe_mode=True)`` with user-facing errors.

    Args:
        path: a local ``.keras`` (or legacy ``.h5``) model file.
        compile: restore the saved optimizer and losses too (False: an inference/teacher model).

    Returns:
        The loaded ``keras.Model``.

    Raises:
        UserError: the file does not exist, or it holds a ``Lambda`` layer (Python code), which
            safe mode refuses. Other load failures propagate unchanged for the caller to word.

    Example:
        >>> teacher = load_keras_model("saved_models/teacher.keras")  # doctest: +SKIP
    """
    import keras

    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"model file {path} not found")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as error:
        if any(marker in str(error) for marker in _UNSAFE_MARKERS):
            # Short: callers may quote it after their own prefix (squeeze keeps 300 characters).
            raise UserError(f"model file {path} is refused: it has a Lambda layer, which carries arbitrary "
                            "Python code, and keras_fgvc loads models with safe_mode=True") from None
        raise
