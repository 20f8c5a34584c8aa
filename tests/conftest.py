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


RELIABILITY_DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "RELIABILITY.md")


def reliability_cases(path: str = RELIABILITY_DOC) -> set[str]:
    """``file::test`` ids docs/RELIABILITY.md names; ``, ::other`` continues the last file named."""
    import re

    cases, current = set(), None
    with open(path) as doc:
        for file, name in re.findall(r"(tests/[\w/]+\.py)?::(\w+)", doc.read()):
            current = file or current
            cases.add(f"{current}::{name}")
    return cases


def pytest_collection_modifyitems(config, items):
    """Every test docs/RELIABILITY.md lists gets the ``reliability`` mark (``pytest -m reliability``)."""
    cases = reliability_cases()
    for item in items:
        if item.nodeid.split("[")[0] in cases:
            item.add_marker(pytest.mark.reliability)
