"""Installing on the images users run: TensorFlow is an extra, so Kaggle's TPU image (tensorflow-cpu
2.20 beside jax[tpu]) keeps its own; importing keras_fgvc checks that some TensorFlow at or above
the floor is there, without importing it, and says how to install one."""

import configparser
import os
import subprocess
import sys

import pytest

from keras_fgvc._versions import check_tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = "pip install 'keras_fgvc[tensorflow]' (or 'tensorflow-cpu>=2.20')"


@pytest.mark.parametrize("installed", [("tensorflow", "2.21.0"), ("tensorflow-cpu", "2.20.0"),
                                       ("tensorflow-macos", "2.20.1"), ("tf-nightly", "2.22.0.dev20261120")])
def test_any_tensorflow_distribution_at_the_floor_will_do(installed):
    assert check_tensorflow(installed) is None


def test_an_old_or_missing_tensorflow_is_one_import_error_with_the_install_line():
    with pytest.raises(ImportError) as old:
        check_tensorflow(("tensorflow-cpu", "2.19.1"))
    assert str(old.value) == (f"tensorflow-cpu 2.19.1 is older than 2.20, the oldest TensorFlow keras_fgvc is tested "
                              f"with: {INSTALL}")
    with pytest.raises(ImportError) as missing:
        check_tensorflow(None)
    assert str(missing.value) == ("keras_fgvc needs TensorFlow 2.20 or newer (tf.data input and SavedModel export, "
                                  f"under either Keras backend), and none is installed: {INSTALL}")


def test_importing_without_tensorflow_fails_with_that_line_and_imports_nothing():
    fake = ("import importlib.metadata as m\n"
            "real = m.version\n"
            "def fake(name):\n"
            "    if name.startswith(('tensorflow', 'tf-nightly')):\n"
            "        raise m.PackageNotFoundError(name)\n"
            "    return real(name)\n"
            "m.version = fake\n"
            "import sys\n"
            "try:\n"
            "    import keras_fgvc\n"
            "except ImportError as error:\n"
            "    print(error, '|', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", fake], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ("keras_fgvc needs TensorFlow 2.20 or newer (tf.data input and SavedModel export, "
                                     f"under either Keras backend), and none is installed: {INSTALL} | False False")


def test_tensorflow_is_an_extra_not_a_requirement():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    requires = [line.split(">=")[0].strip() for line in setup["options"]["install_requires"].splitlines() if line.strip()]
    # tensorflow-hub depends on tf-keras, which depends on tensorflow: it would pull TensorFlow in too.
    assert not {"tensorflow", "tensorflow-cpu", "tensorflow-hub"} & set(requires)
    extras = setup["options.extras_require"]
    assert extras["tensorflow"].strip() == "tensorflow>=2.20" and "tensorflow-hub" in extras["hub"]
