"""Optimizers from config: class and hyper-parameters per name, and weight decay that skips
normalisation gamma/beta and biases by exact variable name."""

import re

import keras
import numpy as np
import pytest

from keras_fgvc.training.optimizers import NO_WEIGHT_DECAY_PATTERN, OPTIMIZERS, make_optimizer
from tests.training.test_schedules import SPE, train_cfg


def test_sgd_hyper_parameters():
    optimizer = make_optimizer(train_cfg(optimizer="sgd", momentum=0.8, nesterov=True, weight_decay=5e-4), SPE)
    assert type(optimizer) is keras.optimizers.SGD
    assert (optimizer.momentum, optimizer.nesterov, optimizer.weight_decay) == (0.8, True, 5e-4)
    assert float(optimizer.learning_rate) == pytest.approx(0.1)


@pytest.mark.parametrize("name, cls", [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW)])
def test_adam_family_keeps_keras_betas(name, cls):
    optimizer = make_optimizer(train_cfg(optimizer=name, learning_rate=1e-3, weight_decay=0.6, momentum=0.5), SPE)
    assert type(optimizer) is cls
    # momentum is SGD-only: Adam's beta_1 stays at the Keras default.
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.weight_decay) == (0.9, 0.999, 0.6)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)


def test_zero_weight_decay_is_off():
    assert make_optimizer(train_cfg(optimizer="sgd"), SPE).weight_decay is None
    assert make_optimizer(train_cfg(optimizer="adam"), SPE).weight_decay is None
    assert make_optimizer(train_cfg(optimizer="adamw"), SPE).weight_decay == 0.0


def test_old_two_argument_call_is_unscaled():
    optimizer = make_optimizer(train_cfg(lr_scaling="linear", schedule="constant"), SPE)
    assert float(optimizer.learning_rate) == pytest.approx(0.1)  # global_batch defaults to 256


def test_schedule_is_attached():
    optimizer = make_optimizer(train_cfg(schedule="cosine"), SPE)
    assert isinstance(optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)


def _tiny_model():
    # The Dense is named "bias_proj" on purpose: its kernel must still decay.
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="bias_proj")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:  # biases start at 0 and gamma at 1: make every one informative
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    return model


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("decay_bn_and_bias", [False, True])
def test_decoupled_weight_decay_and_exclusions(name, decay_bn_and_bias):
    lr, wd = 0.5, 0.1
    cfg = train_cfg(optimizer=name, learning_rate=lr, weight_decay=wd, decay_bn_and_bias=decay_bn_and_bias)
    optimizer = make_optimizer(cfg, SPE)
    model = _tiny_model()
    variables = model.trainable_variables
    before = {v.path: np.array(v.numpy()) for v in variables}
    # Zero gradients: SGD(momentum) and Adam move nothing, so any change is the decay alone.
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])

    excluded = {"bias_proj/bias", "bn/gamma", "bn/beta", "ln/gamma", "ln/beta", "head/bias"}
    decayed = {"bias_proj/kernel", "head/kernel"}
    assert {v.path for v in variables} == excluded | decayed
    for v in variables:
        after = v.numpy()
        if v.path in decayed or decay_bn_and_bias:
            np.testing.assert_allclose(after, before[v.path] * (1 - lr * wd), rtol=1e-6, err_msg=v.path)
        else:
            np.testing.assert_array_equal(after, before[v.path], err_msg=v.path)


# (variable.name as Keras' _use_weight_decay sees it, excluded?)
PATTERN_CASES = [
    ("bias", True),  # JAX backend: the Keras variable's own name
    ("gamma", True),
    ("beta", True),
    ("kernel", False),
    ("bias_proj/bias:0", True),  # TensorFlow backend: the tf.Variable's name
    ("bias_proj/kernel:0", False),
    ("stem/bn/gamma/replica_1:0", True),  # MirroredStrategy replica copy
    ("blocks_0/tpu_batch_normalization/beta:0", True),  # HubBackbone's SavedModel variables
    ("head/kernel_bias:0", False),
    ("gamma_gate/kernel:0", False),
    ("biases", False),
]


def test_exclusion_pattern_takes_the_last_name_component():
    got = [(name, re.search(NO_WEIGHT_DECAY_PATTERN, name) is not None) for name, _ in PATTERN_CASES]
    assert got == PATTERN_CASES


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError, match="sgd, adam, adamw"):
        make_optimizer(train_cfg(optimizer="lamb"), SPE)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_lr_multipliers_scale_the_step_and_the_decay_of_chosen_variables(name):
    """The fine-tuning recipe's lower backbone rate: the "bias_proj" Dense stands for the backbone."""
    lr, wd, multiplier = 0.5, 0.1, 0.1
    model = _tiny_model()
    scaled = model.get_layer("bias_proj").trainable_variables
    cfg = train_cfg(optimizer=name, learning_rate=lr, weight_decay=wd, momentum=0.0, schedule="constant")
    optimizer = make_optimizer(cfg, SPE, lr_multipliers=[(scaled, multiplier)])
    plain = make_optimizer(cfg, SPE)
    assert isinstance(optimizer, type(plain)) and float(optimizer.learning_rate) == pytest.approx(lr)
    twin = _tiny_model()  # same initial values (seeded), stepped by the plain optimizer
    gradient = [keras.ops.full(v.shape, 0.2) for v in model.trainable_variables]
    before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
    optimizer.apply_gradients(zip(gradient, model.trainable_variables))
    plain.apply_gradients(zip(gradient, twin.trainable_variables))
    scaled_paths = {v.path for v in scaled}
    for v, t in zip(model.trainable_variables, twin.trainable_variables):
        if v.path not in scaled_paths:  # untouched by the multiplier: exactly the plain optimizer's step
            np.testing.assert_allclose(v.numpy(), t.numpy(), rtol=1e-6, err_msg=v.path)
            continue
        w = before[v.path]
        decayed = w * (1 - lr * multiplier * wd)  # decoupled decay at the variable's own rate
        # SGD without momentum steps lr * g; Adam's first step is lr * sign(g) (g / (|g| + eps)).
        step = lr * multiplier * (0.2 if name == "sgd" else 1.0)
        np.testing.assert_allclose(v.numpy(), decayed - step, rtol=1e-5, err_msg=v.path)
