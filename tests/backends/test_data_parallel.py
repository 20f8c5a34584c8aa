"""``runtime.distribute=auto`` under JAX is ``keras.distribution.DataParallel`` over the visible
devices: with 2 host CPU devices each holds half of the global batch (per-replica batch x 2) in
the jitted step, and the weights after an epoch equal one device's at the same global batch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.pipelines.cli import ROOT

pytest.importorskip("jax", reason="the JAX backend needs the jax extra: pip install '.[jax]'")


def run_worker(kind: str, per_replica_batch: int, out):
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-m", "tests.backends.data_parallel_worker", kind, str(per_replica_batch),
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data_parallel")
    return run_worker("auto", 4, folder / "auto.json"), run_worker("none", 8, folder / "none.json")


def test_auto_splits_each_global_batch_over_the_two_devices(runs):
    parallel, _ = runs
    assert parallel["distribution"] == "DataParallel" and parallel["replicas"] == 2 and parallel["jit"] is True
    assert parallel["global_batch"] == 8
    assert parallel["shards"] and all(shape == [4, 6, 6, 3] for shape in parallel["shards"])
    assert parallel["weight_devices"] == 2  # weights replicated on both


def test_auto_precision_under_jax_is_the_same_table_as_under_tensorflow(runs):
    parallel, _ = runs
    assert parallel["precision"] == {"cpu": "float32", "gpu": "mixed_float16", "tpu": "mixed_bfloat16"}
    assert parallel["device"] == "cpu" and parallel["policy"] == "float32"  # the plan applied last is the real one


def test_none_keeps_one_device_and_both_train_the_same_weights(runs):
    parallel, single = runs
    assert single["distribution"] == "NoneType" and single["replicas"] == 1
    assert single["shards"] and all(shape == [8, 6, 6, 3] for shape in single["shards"])
    assert single["loss"] == pytest.approx(parallel["loss"], rel=1e-5)
    for a, b in zip(parallel["weights"], single["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)
