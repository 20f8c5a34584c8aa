import os
import tempfile

# Quiet TF's C++ logs and keep W&B local: tests never reach a network.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Image checks and the decoded-pixel cache live under $XDG_CACHE_HOME: one fresh folder per test session.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="keras_fgvc_cache_")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts from float32 and a fresh Keras graph state."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)
