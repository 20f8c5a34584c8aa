"""The Keras version floor and a TensorFlow present, checked when ``keras_fgvc`` is imported
(before Keras or TensorFlow itself is).

TensorFlow is not an install requirement: Kaggle's TPU image ships ``tensorflow-cpu`` with
``jax[tpu]``, and a ``tensorflow`` requirement (another distribution of the same package) would
make pip install a second TensorFlow over it. So any TensorFlow distribution at or above the
floor will do, and its absence is one clear ImportError with the install line.

Keras releases before 3.14 can run code from a crafted model file even in safe mode
(CVE-2025-1550, CVE-2025-8747, CVE-2025-9906, CVE-2025-12060). This module reads the installed
version from the package metadata, so the check costs no Keras or TensorFlow import; the parse
is the PEP 440 ordering cut down to what a floor needs: ``3.14.0rc1`` and ``3.14.0.dev1`` come
before ``3.14``, ``3.14.0.post1`` and ``3.14.0+local`` do not.
"""

import re
from importlib import metadata

KERAS_FLOOR = (3, 14, 0)
KERAS_CVES = "CVE-2025-1550, CVE-2025-8747, CVE-2025-9906, CVE-2025-12060"
# keras-nightly installs the same ``keras`` package under another distribution name.
KERAS_DISTRIBUTIONS = ("keras", "keras-nightly")
_INSTALL = "pip install 'keras>=3.14'"
# tf.data feeds every backend and SavedModel is every export, so TensorFlow is needed under JAX too.
# 2.20: Kaggle's TPU image (tensorflow-cpu 2.20), the oldest tested (README, "Kaggle / Colab").
TENSORFLOW_FLOOR = (2, 20, 0)
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel", "tf-nightly",
                            "tf-nightly-cpu")
_TF_INSTALL = "pip install 'keras_fgvc[tensorflow]' (or 'tensorflow-cpu>=2.20')"
_VERSION = re.compile(r"v?(?P<release>\d+(?:\.\d+)*)(?P<rest>.*)", re.IGNORECASE)
_PRE_RELEASE = re.compile(r"^[-_.]?(a|b|c|rc|alpha|beta|pre|preview|dev)\d*", re.IGNORECASE)


def parse_version(version: str) -> tuple[tuple[int, ...], bool]:
    """``(release padded to 3 numbers, is_pre_release)``; ValueError for text that is no version.

    Example:
        >>> parse_version("3.14.0rc1")
        ((3, 14, 0), True)
    """
    match = _VERSION.fullmatch(version.strip())
    if match is None:
        raise ValueError(f"{version!r} is no version number")
    release = tuple(int(part) for part in match["release"].split("."))
    release = (release + (0, 0, 0))[:max(3, len(release))]
    return release, bool(_PRE_RELEASE.match(match["rest"]))


def check_keras_version(version: str | None) -> None:
    """ImportError with the fix when ``version`` (None: not installed) is below the floor.

    Example:
        >>> check_keras_version("3.15.1")  # fine
        >>> check_keras_version("3.13.2")  # doctest: +SKIP
        ImportError: keras 3.13.2 is older than 3.14, which has model-loading CVEs (...): pip install 'keras>=3.14'
    """
    if version is None:
        raise ImportError(f"keras_fgvc needs keras 3.14 or newer, and keras is not installed: {_INSTALL}")
    try:
        release, pre_release = parse_version(version)
    except ValueError:
        raise ImportError(f"keras_fgvc cannot read the installed keras version {version!r}; it needs keras 3.14 "
                          f"or newer: {_INSTALL}") from None
    floor = KERAS_FLOOR + (0,) * (len(release) - len(KERAS_FLOOR))
    if release < floor or (release == floor and pre_release):
        raise ImportError(f"keras {version} is older than 3.14, which has model-loading CVEs ({KERAS_CVES}): "
                          f"{_INSTALL}")


def installed_keras_version() -> str | None:
    """The installed Keras distribution's version (None when there is none)."""
    for name in KERAS_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_tensorflow() -> tuple[str, str] | None:
    """``(distribution, version)`` of the installed TensorFlow (None when there is none)."""
    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_tensorflow(installed: tuple[str, str] | None) -> None:
    """ImportError with the fix when no TensorFlow distribution is installed, or one below the floor.

    Example:
        >>> check_tensorflow(("tensorflow-cpu", "2.20.0"))  # Kaggle's TPU image: fine
    """
    if installed is None:
        raise ImportError("keras_fgvc needs TensorFlow 2.20 or newer (tf.data input and SavedModel export, under "
                          f"either Keras backend), and none is installed: {_TF_INSTALL}")
    name, version = installed
    try:
        release, _ = parse_version(version)  # a pre-release of 2.20 or later is tested enough
    except ValueError:
        raise ImportError(f"keras_fgvc cannot read the installed {name} version {version!r}: {_TF_INSTALL}") from None
    if release[:3] < TENSORFLOW_FLOOR and not name.startswith("tf-nightly"):
        raise ImportError(f"{name} {version} is older than 2.20, the oldest TensorFlow keras_fgvc is tested with: "
                          f"{_TF_INSTALL}")
