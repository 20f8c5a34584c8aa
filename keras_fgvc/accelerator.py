"""Which accelerator this machine has, found without importing TensorFlow, JAX or Keras.

The Keras backend must be chosen before Keras is imported, and the choice depends on the
accelerator: TPUs run Keras on JAX (Kaggle's TPU image ships ``jax[tpu]`` with ``tensorflow-cpu``,
so TensorFlow cannot drive them: README, "Backends"); GPUs and CPUs run either backend. So the
search reads device files and environment variables only; ``training/precision.py`` asks the
backend itself once it is imported.
"""

import glob
import os

# What a TPU host shows: the accel device files of TPU VMs (v2-v4), the vfio files of v5e/v6e
# hosts, and the variables Kaggle/Colab/GCE set for a TPU.
TPU_DEVICE_FILES = ("/dev/accel*", "/dev/vfio/[0-9]*")
TPU_ENV = ("TPU_NAME", "TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR")


def has_tpu(environ=os.environ) -> bool:
    return any(environ.get(name) for name in TPU_ENV) or any(glob.glob(p) for p in TPU_DEVICE_FILES)


def has_nvidia_driver(environ=os.environ) -> bool:
    return os.path.exists("/proc/driver/nvidia") or any(
        os.path.isfile(os.path.join(folder, "nvidia-smi")) for folder in environ.get("PATH", "").split(os.pathsep))


def find_accelerator(environ=os.environ) -> str:
    """``"gpu"`` (an NVIDIA driver is present), ``"tpu"`` or ``"cpu"``.

    The driver is asked first: vfio device files also exist on hosts that pass a GPU through.
    """
    if has_nvidia_driver(environ):
        return "gpu"
    return "tpu" if has_tpu(environ) else "cpu"


def backend_for(accelerator: str) -> str:
    """The Keras backend for ``accelerator``: JAX on a TPU, TensorFlow (the default) elsewhere."""
    return "jax" if accelerator == "tpu" else "tensorflow"
