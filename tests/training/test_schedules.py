"""Learning-rate schedules against their closed forms (torch's epoch-level schedulers where the
recipes come from torch; Goyal et al. 2017 for the scaling rule and the warm-up)."""

import dataclasses
import math

import keras
import numpy as np
import pytest

from keras_fgvc.training import schedules
from keras_fgvc.training.optimizers import make_optimizer
from keras_fgvc.training.schedules import LinearWarmup, make_schedule, scaled_learning_rate, schedule_callbacks

LR = 0.1
SPE = 10  # steps per epoch
THESIS_MILESTONES = [67, 82, 95, 107]  # Cars thesis (seed 001): MultiStepLR gamma 0.1


@dataclasses.dataclass
class TrainStandIn:
    """Exactly the TrainConfig fields the optimizer/schedule code reads."""

    epochs: int = 10
    optimizer: str = "sgd"
    learning_rate: float = LR
    lr_scaling: str = "none"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_bn_and_bias: bool = True
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    milestones: list = dataclasses.field(default_factory=list)
    gamma: float = 0.1
    decay_rate: float = 0.9
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_monitor: str = "val_loss"


def train_cfg(**overrides):
    return TrainStandIn(**overrides)


def lr_at(schedule, step):
    if isinstance(schedule, float):
        return schedule
    return float(keras.ops.convert_to_numpy(schedule(step)))


def assert_schedule(schedule, expected: dict):
    got = {step: lr_at(schedule, step) for step in expected}
    # atol: float32 cancellation in cos near the end of the cosine (1e-7 of the base rate).
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5, atol=1e-8, err_msg=str(got))


def test_scaling_rule():
    assert scaled_learning_rate(train_cfg(lr_scaling="linear"), 512) == pytest.approx(0.2)
    assert scaled_learning_rate(train_cfg(lr_scaling="linear"), 64) == pytest.approx(0.025)
    assert scaled_learning_rate(train_cfg(lr_scaling="none"), 512) == pytest.approx(0.1)
    # The schedule starts from the scaled rate.
    assert lr_at(make_schedule(train_cfg(schedule="cosine", lr_scaling="linear"), SPE, 512), 0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="none, linear"):
        scaled_learning_rate(train_cfg(lr_scaling="sqrt"), 512)


def test_cosine_to_zero():
    total = 10 * SPE
    expected = {t: LR * 0.5 * (1 + math.cos(math.pi * min(t, total) / total)) for t in (0, 1, 25, 50, 99, 100, 150)}
    assert expected[100] == 0.0
    assert_schedule(make_schedule(train_cfg(schedule="cosine"), SPE), expected)


def test_cosine_after_linear_warmup():
    total, warmup = 10 * SPE, 15  # 1.5 epochs
    cfg = train_cfg(schedule="cosine", warmup_epochs=1.5)

    def closed_form(t):
        if t < warmup:
            return LR * t / warmup
        return LR * 0.5 * (1 + math.cos(math.pi * min(t - warmup, total - warmup) / (total - warmup)))

    steps = (0, 1, 7, 14, 15, 16, 57, 99, 100)
    assert_schedule(make_schedule(cfg, SPE), {t: closed_form(t) for t in steps})
    assert lr_at(make_schedule(cfg, SPE), 0) == 0.0
    assert lr_at(make_schedule(cfg, SPE), 15) == pytest.approx(LR)


def test_multistep_thesis_milestones_like_torch():
    cfg = train_cfg(schedule="multistep", epochs=129, milestones=THESIS_MILESTONES, gamma=0.1)
    schedule = make_schedule(cfg, SPE)
    expected = {0: LR}
    for i, milestone in enumerate(THESIS_MILESTONES):
        # Last batch of epoch milestone-1 keeps the old rate; the first batch of epoch `milestone` has the new one.
        expected[milestone * SPE - 1] = LR * 0.1**i
        expected[milestone * SPE] = LR * 0.1 ** (i + 1)
    expected[129 * SPE] = LR * 0.1**4

    def torch_multistep(step):  # torch MultiStepLR, stepped at each epoch end
        return LR * 0.1 ** sum(m <= step // SPE for m in THESIS_MILESTONES)

    assert all(expected[t] == pytest.approx(torch_multistep(t)) for t in expected)
    assert_schedule(schedule, expected)


def test_multistep_rejects_unsorted_milestones():
    with pytest.raises(ValueError, match="strictly increasing"):
        make_schedule(train_cfg(schedule="multistep", milestones=[82, 67]), SPE)


def test_exponential_per_epoch():
    cfg = train_cfg(schedule="exponential", decay_rate=0.9)
    expected = {t: LR * 0.9 ** (t // SPE) for t in (0, 9, 10, 19, 20, 55, 99)}
    assert_schedule(make_schedule(cfg, SPE), expected)


def test_constant_is_a_float():
    schedule = make_schedule(train_cfg(schedule="constant", lr_scaling="linear"), SPE, global_batch=128)
    assert isinstance(schedule, float) and schedule == pytest.approx(0.05)


def test_warmup_then_multistep():
    cfg = train_cfg(schedule="multistep", warmup_epochs=2, milestones=[3, 5], gamma=0.1)
    schedule = make_schedule(cfg, SPE)
    assert isinstance(schedule, LinearWarmup)
    expected = {0: 0.0, 5: LR * 5 / 20, 19: LR * 19 / 20, 20: LR, 29: LR, 30: LR * 0.1, 49: LR * 0.1, 50: LR * 0.01}
    assert_schedule(schedule, expected)


def test_warmup_then_exponential_and_constant():
    cfg = train_cfg(schedule="exponential", warmup_epochs=1, decay_rate=0.5)
    expected = {t: LR * min(1.0, t / SPE) * 0.5 ** (t // SPE) for t in (0, 3, 9, 10, 11, 25)}
    assert_schedule(make_schedule(cfg, SPE), expected)
    constant = make_schedule(train_cfg(schedule="constant", warmup_epochs=1), SPE)
    assert_schedule(constant, {0: 0.0, 4: 0.04, 10: LR, 500: LR})


def test_optimizer_sees_the_step_before_it_is_counted():
    """End to end through SGD: with gradient 1 and no momentum, each step moves w by exactly -lr_t,
    and lr_t follows torch's per-epoch MultiStepLR (epoch e = steps e*SPE .. e*SPE + SPE - 1)."""
    spe = 2
    cfg = train_cfg(schedule="multistep", momentum=0.0, milestones=[1, 2], gamma=0.5)
    optimizer = make_optimizer(cfg, steps_per_epoch=spe)
    w = keras.Variable(0.0)
    moves = []
    for _ in range(6):
        before = float(w.numpy())
        optimizer.apply_gradients([(keras.ops.ones(()), w)])
        moves.append(before - float(w.numpy()))
    np.testing.assert_allclose(moves, [LR, LR, LR / 2, LR / 2, LR / 4, LR / 4], rtol=1e-6)


def test_warmup_schedule_survives_optimizer_config_roundtrip():
    cfg = train_cfg(schedule="multistep", warmup_epochs=1, milestones=[2])
    optimizer = make_optimizer(cfg, SPE)
    clone = keras.optimizers.SGD.from_config(optimizer.get_config())
    for step in (0, 5, 10, 19, 20):
        assert lr_at(clone._learning_rate, step) == pytest.approx(lr_at(optimizer._learning_rate, step))
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(LinearWarmup(0.3, 4)))
    assert lr_at(restored, 2) == pytest.approx(0.15)


def test_plateau_returns_the_scaled_constant_and_a_callback_that_reduces_it():
    cfg = train_cfg(schedule="plateau", lr_scaling="linear", plateau_factor=0.5, plateau_patience=2)
    schedule = make_schedule(cfg, SPE, global_batch=512)
    assert isinstance(schedule, float) and schedule == pytest.approx(0.2)

    (callback,) = schedule_callbacks(cfg)
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    optimizer = make_optimizer(cfg, SPE, global_batch=512)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    callback.set_model(model)
    callback.on_train_begin()

    def lr():
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    losses_and_lr = [(1.0, 0.2), (0.9, 0.2), (0.95, 0.2), (0.92, 0.1), (0.99, 0.1), (0.93, 0.05), (0.5, 0.05)]
    for epoch, (val_loss, expected) in enumerate(losses_and_lr):
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
        assert lr() == pytest.approx(expected), (epoch, lr())


def test_plateau_on_an_accuracy_maximises():
    (callback,) = schedule_callbacks(train_cfg(schedule="plateau", plateau_monitor="val_accuracy", plateau_patience=1))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_accuracy": 0.5})
    callback.on_epoch_end(1, {"val_accuracy": 0.6})  # improvement: no reduction
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.1)
    callback.on_epoch_end(2, {"val_accuracy": 0.55})
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)


def test_plateau_with_warmup_is_refused():
    cfg = train_cfg(schedule="plateau", warmup_epochs=1)
    with pytest.raises(ValueError, match="warmup_epochs"):
        make_schedule(cfg, SPE)
    with pytest.raises(ValueError, match="warmup_epochs"):
        schedule_callbacks(cfg)


def test_other_schedules_need_no_callback():
    for name in schedules.SCHEDULES:
        if name != "plateau":
            assert schedule_callbacks(train_cfg(schedule=name)) == []


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="cosine, multistep, plateau, exponential, constant"):
        make_schedule(train_cfg(schedule="step"), SPE)
    with pytest.raises(ValueError, match="cosine, multistep"):
        schedule_callbacks(train_cfg(schedule="onecycle"))
