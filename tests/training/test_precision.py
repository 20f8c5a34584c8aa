"""The "auto" runtime policy: float32 without XLA on CPU, mixed precision only on accelerators."""

import keras
import pytest
import tensorflow as tf

from keras_fgvc.config.compose import compose
from keras_fgvc.training.precision import configure


def test_auto_on_this_cpu_machine_is_float32_without_jit():
    assert not tf.config.list_physical_devices("GPU")
    plan = configure(compose([]).runtime)
    assert (plan.device, plan.precision, plan.jit_compile) == ("cpu", "float32", False)
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("device, precision, jit", [("gpu", "mixed_float16", "auto"), ("tpu", "mixed_bfloat16", "auto")])
def test_auto_on_accelerators_picks_mixed_precision(device, precision, jit, monkeypatch):
    monkeypatch.setattr("keras_fgvc.training.precision.make_strategy", lambda kind, device: tf.distribute.get_strategy())
    plan = configure(compose([]).runtime, device=device)
    assert (plan.precision, plan.jit_compile) == (precision, jit)
    assert keras.config.dtype_policy().name == precision


def test_explicit_settings_win_over_auto():
    plan = configure(compose(["runtime.precision=mixed_bfloat16", "runtime.jit_compile=true"]).runtime)
    assert (plan.precision, plan.jit_compile) == ("mixed_bfloat16", True)


def test_logits_stay_float32_under_mixed_precision():
    from keras_fgvc.models import build_model

    configure(compose(["runtime.precision=mixed_float16"]).runtime)
    cfg = compose(["smoke=true", "model.backbone=ghostnet_050", "augment.preset=none"])
    outputs = build_model(cfg, 2)(tf.zeros((1, 32, 32, 3)))
    assert outputs["logits"].dtype == tf.float32
