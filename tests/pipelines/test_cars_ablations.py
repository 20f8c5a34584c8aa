"""Every ablation of the thesis named in cars.yaml is one override that changes what it says (the
built model, the preset, the loss, the schedule) and no other config value."""

import re

import keras
import numpy as np
import pytest

from keras_fgvc.config.compose import compose
from keras_fgvc.config.validate import ConfigError, to_dict
from keras_fgvc.losses.registry import build_loss
from keras_fgvc.models import build_model
from keras_fgvc.training.schedules import make_schedule, schedule_callbacks
from keras_fgvc.training.stages import stage_augmentation, stage_train_config
from keras_fgvc.tracking.compare import flatten_config

# Small and fast: smoke widths and 32 px; the ablations are the same overrides on the full recipe.
BASE = ["pipeline=cars", "smoke=true"]

# override(s) -> the dotted config keys it may change (and must change)
ABLATIONS = {
    ("cars.label_smoothing=0",): {"cars.label_smoothing", "train.stages.0.losses.logits.0.kwargs.epsilon"},
    ("model.input_scale=unit",): {"model.input_scale"},
    ("model.input_scale=imagenet",): {"model.input_scale"},
    ("augment.skip=[RandomFlip]",): {"augment.skip"},
    ("augment.skip=[RandomAffine]",): {"augment.skip"},
    ("augment.skip=[RandomColorJitter]",): {"augment.skip"},
    ("augment.preset=none",): {"augment.preset"},
    ("augment.preset=cars_erasing",): {"augment.preset"},
    ("model.img_channels=1", "augment.skip=[RandomColorJitter]"): {"model.img_channels", "augment.skip"},
    ("data.box_mode=crop",): {"data.box_mode"},
    ("data.box_mode=erase_background",): {"data.box_mode"},
    ("train.weight_decay=0.1",): {"train.weight_decay"},
    ("model.dropout=0.5",): {"model.dropout"},
    ("model.backbone_kwargs.out_channels=1280",): {"model.backbone_kwargs.out_channels"},
    ("model.backbone=ghostnet_130",): {"model.backbone"},
    ("train.schedule=plateau",): {"train.schedule"},
    ("train.schedule=exponential",): {"train.schedule"},
    ("train.schedule=cosine",): {"train.schedule"},
}


def changed_keys(base, other) -> set:
    """Dotted keys whose value differs; a list's items count as the list (augment.skip.0 -> augment.skip)."""
    a, b = flatten_config(to_dict(base)), flatten_config(to_dict(other))
    return {re.sub(r"(\.\d+)+$", "", key) for key in set(a) | set(b) if a.get(key) != b.get(key)}


@pytest.fixture(scope="module")
def base():
    return compose(BASE)


@pytest.mark.parametrize("overrides", list(ABLATIONS), ids=lambda o: " ".join(o))
def test_an_ablation_changes_only_its_own_keys(base, overrides):
    assert changed_keys(base, compose(BASE + list(overrides))) == ABLATIONS[overrides]


def test_the_defaults_are_the_thesis_best_run():
    cfg = compose(["pipeline=cars"])
    assert (cfg.model.backbone, cfg.model.backbone_kwargs, cfg.model.dropout) == ("ghostnet_100", {"out_channels": 320}, 0.2)
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.model.input_scale) == (227, 64, "dataset")
    assert (cfg.train.optimizer, cfg.train.learning_rate, cfg.train.weight_decay) == ("adamw", 1e-3, 0.6)
    assert (cfg.train.schedule, cfg.train.milestones, cfg.train.gamma) == ("multistep", [67, 82, 95, 107], 0.1)
    assert (cfg.train.epochs, cfg.train.early_stopping_patience, cfg.train.monitor) == (200, 15, "val_loss")
    assert cfg.train.stages[0].losses["logits"][0].kwargs == {"epsilon": 0.1}
    assert cfg.augment.preset == "cars"


def test_label_smoothing_zero_is_plain_cross_entropy(base):
    cfg = compose(BASE + ["cars.label_smoothing=0"])
    term = cfg.train.stages[0].losses["logits"][0]
    loss = build_loss(term.name, term.kwargs, {"num_classes": 4, "dim": 4, "output": "logits"})
    y, logits = np.array([0, 2]), np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]], "float32")
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_p[np.arange(2), y].mean()
    assert float(loss(y, logits)) == pytest.approx(expected, rel=1e-5)


def test_normalisation_ablation_changes_the_model_input_layer(base):
    def input_layers(cfg):
        return [layer.name for layer in build_model(cfg, 4).layers[1:3]]

    assert "to_unit" in input_layers(compose(BASE + ["model.input_scale=unit"]))
    assert "standardize" in input_layers(compose(BASE + ["model.input_scale=imagenet"]))


def test_augmentation_ablations_drop_exactly_their_layer(base):
    def layer_types(cfg):
        layer, _, _ = stage_augmentation(cfg, cfg.train.stages[0])
        return [type(inner).__name__ for inner in layer.layers] if layer is not None else []

    assert layer_types(base) == ["RandomFlip", "RandomAffine", "RandomColorJitter"]
    assert layer_types(compose(BASE + ["augment.skip=[RandomAffine]"])) == ["RandomFlip", "RandomColorJitter"]
    with pytest.raises(ConfigError, match="augment.skip.*RandomErasing"):
        compose(BASE + ["augment.skip=[RandomErasing]"])


def test_greyscale_with_a_colour_step_is_refused_at_compose_time():
    with pytest.raises(ConfigError, match=r"img_channels' = 1.*RandomColorJitter.*augment.skip=\[RandomColorJitter\]"):
        compose(BASE + ["model.img_channels=1"])


def test_greyscale_builds_a_one_channel_model(base):
    cfg = compose(BASE + ["model.img_channels=1", "augment.skip=[RandomColorJitter]"])
    model = build_model(cfg, 4)
    assert model.input_shape == (None, 32, 32, 1)
    assert model.get_layer("backbone").input_shape[-1] == 1


def test_head_width_and_backbone_width_change_the_model(base):
    def params(cfg):
        return build_model(cfg, 4).count_params()

    assert build_model(compose(BASE + ["model.backbone_kwargs.out_channels=1280"]), 4).get_layer(
        "backbone").get_layer("head_conv").filters == 1280
    default = compose(["pipeline=cars"])
    assert build_model(default, 4).get_layer("backbone").get_layer("head_conv").filters == 320
    assert params(compose(BASE + ["model.backbone=ghostnet_130"])) > params(compose(BASE + ["model.backbone=ghostnet_100"])) > params(base)


def test_schedule_ablations_change_the_learning_rate_rule(base):
    def train_cfg(*overrides):
        cfg = compose(BASE + list(overrides) + ["train.epochs=120"])
        return stage_train_config(cfg, cfg.train.stages[0])

    steps = 10
    multistep = make_schedule(train_cfg(), steps)
    lrs = [float(multistep(epoch * steps)) for epoch in (0, 66, 67, 82, 95, 107)]
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7], rtol=1e-4)
    cosine = make_schedule(train_cfg("train.schedule=cosine"), steps)
    assert float(cosine(60 * steps)) == pytest.approx(0.5e-3, rel=1e-3)
    exponential = make_schedule(train_cfg("train.schedule=exponential"), steps)
    assert float(exponential(2 * steps)) == pytest.approx(1e-3 * 0.96 ** 2, rel=1e-4)
    plateau = schedule_callbacks(train_cfg("train.schedule=plateau"))
    assert [type(c) for c in plateau] == [keras.callbacks.ReduceLROnPlateau]
