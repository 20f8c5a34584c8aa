"""The accelerator is found from device files and environment variables alone (the backend must be
chosen before Keras is imported): an NVIDIA driver means gpu, TPU signs mean tpu, else cpu."""

import os
import subprocess
import sys

import pytest

from keras_fgvc.accelerator import backend_for, find_accelerator


def test_tpu_environment_variables_mean_a_tpu_and_jax(tmp_path):
    bare = {"PATH": str(tmp_path)}  # no nvidia-smi on this PATH
    if os.path.exists("/proc/driver/nvidia"):
        pytest.skip("an NVIDIA driver is loaded here: this host answers gpu whatever the variables say")
    assert find_accelerator(bare) in ("cpu", "tpu")  # "tpu" only on a real TPU host (device files)
    for name in ("TPU_NAME", "TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR"):
        assert find_accelerator({**bare, name: "v3-8"}) == "tpu"
    assert find_accelerator({**bare, "TPU_NAME": ""}) == find_accelerator(bare)  # set but empty: not a sign
    assert [backend_for(a) for a in ("tpu", "gpu", "cpu")] == ["jax", "tensorflow", "tensorflow"]


def test_an_nvidia_driver_on_the_path_means_a_gpu_even_beside_tpu_signs(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    assert find_accelerator({"PATH": str(tmp_path), "TPU_NAME": "v3-8"}) == "gpu"


def test_finding_it_imports_no_backend():
    code = ("import sys; from keras_fgvc.accelerator import find_accelerator; find_accelerator(); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
