"""What the TPU path asks of the training step, checked on CPU: whole batches where the step is
compiled or split (drop_remainder), several steps per compiled call without changing the maths,
and uint8 pixels into the step."""

import dataclasses

import numpy as np
import pytest

from keras_fgvc.models import build_model
from keras_fgvc.training.precision import RuntimePlan, auto_steps_per_execution, configure
from keras_fgvc.training.stages import stages_to_run, train_stage
from tests.training.test_stages import CLASSES, make_cfg, write_images

ROWS, BATCH = 20, 8  # 2 whole batches and a remainder of 4
STAGE = [{"name": "a", "init_from": "none", "losses": {"logits": [{"name": "sparse_ce"}]}}]
MODEL = {"backbone": "ghostnet_050", "backbone_kwargs": {"out_channels": 16}, "dropout": 0.0, "l2": 0.0,
         "heads": ["softmax"]}


def test_whole_batches_where_the_step_is_compiled_split_or_on_a_tpu():
    cpu = RuntimePlan("cpu", "float32", False, None)
    assert not cpu.whole_batches
    assert RuntimePlan("cpu", "float32", True, None).whole_batches  # XLA: a smaller batch recompiles
    assert RuntimePlan("gpu", "mixed_float16", "auto", None, replicas=2).whole_batches
    assert RuntimePlan("tpu", "mixed_bfloat16", "auto", None).whole_batches
    assert [auto_steps_per_execution(d) for d in ("cpu", "gpu", "tpu")] == [1, 1, 32]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same stage under a TPU-shaped plan (whole batches) with 2 and with 1 steps per call,
    and under the CPU plan; the plan is data, so the TPU's choices run on the CPU here."""
    results = {}
    for name, changes in {"tpu_spe2": {"device": "tpu", "steps_per_execution": 2},
                          "tpu_spe1": {"device": "tpu", "steps_per_execution": 1},
                          "cpu": {}}.items():
        root = tmp_path_factory.mktemp(name)
        (root / "images").mkdir()
        table = write_images(str(root / "images"), ROWS)
        cfg = make_cfg(root, stages=STAGE, model=MODEL, train={"epochs": 1, "optimizer": "sgd", "learning_rate": 0.05,
                                                               "schedule": "constant", "stages": STAGE})
        plan = dataclasses.replace(configure(cfg.runtime), **changes)
        (stage,) = stages_to_run(cfg)
        trained = train_stage(cfg, plan, stage, lambda stage_cfg: build_model(stage_cfg, CLASSES), table,
                              table.iloc[:4], "label", CLASSES)
        results[name] = (trained, [w.numpy() for w in trained.model.weights])
    return results


def test_a_compiled_or_split_step_sees_whole_batches_only(runs):
    tpu, _ = runs["tpu_spe2"]
    cpu, _ = runs["cpu"]
    assert (tpu.info["steps_per_epoch"], tpu.info["whole_batches"]) == (ROWS // BATCH, True)
    assert (cpu.info["steps_per_epoch"], cpu.info["whole_batches"]) == (-(-ROWS // BATCH), False)


def test_steps_per_execution_runs_the_same_steps(runs):
    (two, weights_two), (one, weights_one) = runs["tpu_spe2"], runs["tpu_spe1"]
    assert (two.info["steps_per_execution"], one.info["steps_per_execution"]) == (2, 1)
    assert len(weights_two) == len(weights_one)
    for a, b in zip(weights_two, weights_one):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The comparison can fail: the CPU plan's extra (partial) batch per epoch gives other weights.
    _, weights_cpu = runs["cpu"]
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(weights_one, weights_cpu)) > 1e-4
