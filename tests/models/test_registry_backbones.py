"""Every registered backbone, through the shared harness (``tests/harness.run_backbone_test``).

Parametrized over ``registry.list_backbones()``: a newly registered name is tested without editing
this file. Each name builds once at its smallest useful size (32 px; Inception-ResNet-v2 needs 75),
greyscale where the builder takes ``img_channels``, at a reduced ``width`` where it takes one, and
runs the cheap shape checks. The full battery (JSON / .keras / SavedModel round-trips, predict on
tf.data, one-batch fit, mixed precision) runs on one small variant per family: the variants of a
family differ only in table rows, and building the big ones costs seconds each on CPU.
"""

import keras
import numpy as np
import pytest

from keras_fgvc.config.schema import Config
from keras_fgvc.models import build_model
from keras_fgvc.models.backbones.efficientnetv2 import VARIANTS as EFFICIENTNETV2_VARIANTS
from keras_fgvc.models.backbones.hub import save_as_hub_module
from keras_fgvc.models.backbones.inception_resnet import INCEPTION_RESNET_MIN_SIZE
from keras_fgvc.models.backbones.resnet import RESNET_EXPANSION, RESNET_PLANES
from keras_fgvc.models.backbones.squeezenext import SQUEEZENEXT_FINAL, SQUEEZENEXT_VARIANTS
from keras_fgvc.models.registry import builder_options, get_backbone, list_backbones, register_backbone
from tests.harness import BACKBONE_CHECKS, run_backbone_test, run_task_test

SIZE = 32
MIN_SIZE = {"inception_resnet_v2": INCEPTION_RESNET_MIN_SIZE}
TINY_WIDTH = 1 / 16  # ResNet family: same blocks, 1/16 of the channels
TINY_OUT_CHANNELS = 32  # GhostNet head conv
HUB_FEATURES = 6

# Feature channels of the last map, from the families' own tables (keras.applications for EfficientNetV2:
# round_filters(1280) of each variant's top conv).
EFFICIENTNETV2_CHANNELS = {"efficientnetv2_b2": 1408, "efficientnetv2_b3": 1536}
EXPECTED_CHANNELS = {
    **{name: EFFICIENTNETV2_CHANNELS.get(name, 1280) for name in EFFICIENTNETV2_VARIANTS},
    **{name: int(SQUEEZENEXT_FINAL * width) for name, (width, _, _) in SQUEEZENEXT_VARIANTS.items()},
    "inception_resnet_v2": 1536,
    "hub": HUB_FEATURES,
}
# keras.applications' RGB count (54,336,736) minus the stem conv's 2 x (3 x 3 x 32) extra input weights.
EXPECTED_PARAMS = {"inception_resnet_v2": 54_336_736 - 2 * 288}

# One small variant per family gets the battery. What a family leaves out would exercise only Keras'
# own layers a second time (seconds each on CPU, nothing of ours tested):
#   - all of it (JSON, .keras and SavedModel round-trips, fit, mixed precision) on ResNeSt: our
#     SplitAttention layer, grouped convs, average-pool shortcuts;
#   - GhostNet (depthwise, SE, hard-sigmoid; core layers only): JSON, predict, fit, mixed precision;
#   - SqueezeNext and EfficientNetV2 (core convs only; the latter is keras.applications): JSON,
#     predict, mixed precision;
#   - hub: JSON (re-resolves the handle), predict, SavedModel of borrowed variables, mixed precision;
#     fit and .keras are tests/models/test_hub_backbone.py's subject;
#   - Inception-ResNet-v2 (keras.applications, 54M parameters at any size): shapes and its parameter count.
HEAVY = ("keras_file", "saved_model", "fit", "mixed_precision")
BATTERY = {
    "resnest50d": BACKBONE_CHECKS,
    "ghostnet_050": ("config", "predict", "fit", "mixed_precision"),
    "squeezenext_23v5_100": ("config", "predict", "mixed_precision"),
    "efficientnetv2_b0": ("config", "predict", "mixed_precision"),
    "hub": ("config", "predict", "saved_model", "mixed_precision"),
    "inception_resnet_v2": ("shapes",),
}


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    """A tiny TF2 reusable SavedModel (conv + BN + pool -> HUB_FEATURES) in hub format; no network."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(HUB_FEATURES, 3, strides=2, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    path = str(tmp_path_factory.mktemp("hub") / "module")
    return save_as_hub_module(keras.Model(inputs, x), path, (SIZE, SIZE, 3))


def tiny_options(name, hub_dir):
    """Builder options that keep ``name`` small without changing its structure (from builder_options)."""
    accepted = builder_options(name)
    options = {}
    if "width" in accepted:
        options["width"] = TINY_WIDTH
    if "out_channels" in accepted:
        options["out_channels"] = TINY_OUT_CHANNELS
    if "hub_handle" in accepted:
        options["hub_handle"] = hub_dir
    return options


def input_shape(name):
    size = MIN_SIZE.get(name, SIZE)
    return (size, size, 1 if "img_channels" in builder_options(name) else 3)


def expected_output_shape(name, options):
    if "out_channels" in options:  # GhostNet ends in its pre-logits vector
        return (options["out_channels"],)
    if "width" in options:  # ResNet family: the last stage's planes x expansion
        channels = int(RESNET_PLANES[-1] * options["width"]) * RESNET_EXPANSION
    else:
        channels = EXPECTED_CHANNELS.get(name)
    if name == "hub":
        return (channels,)
    # Stride 32 at the smallest size: one position (Inception-ResNet's valid convs: 75 px -> 1).
    return (1, 1, channels) if channels else None


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_at_its_smallest_size(name, hub_dir):
    options = tiny_options(name, hub_dir)
    checks = BATTERY.get(name, ()) + ("shapes",)
    model = run_backbone_test(name, input_shape(name), checks=checks,
                              expected_output_shape=expected_output_shape(name, options), **options)
    if name in EXPECTED_PARAMS:
        assert model.count_params() == EXPECTED_PARAMS[name]


def test_every_family_has_a_battery_variant():
    """A family is a backbone file (DESIGN.md convention 1): a new one must name its battery variant."""
    def family(name):
        return get_backbone(name).builder.__module__

    assert {family(name) for name in list_backbones()} == {family(name) for name in BATTERY}
    assert any(set(HEAVY) <= set(checks) for checks in BATTERY.values())


@pytest.mark.parametrize("name", ["ghostnet_050", "resnest50d"])
def test_own_families_take_any_input_size(name, hub_dir):
    """Built with free height/width, one model runs on several sizes: stride 32 (GhostNet pools).
    ResNeSt stands for the conv families: its SplitAttention reshapes by the dynamic size."""
    options = tiny_options(name, hub_dir)
    model = get_backbone(name).builder((None, None, 1), **options)
    for size in (32, 64):
        x = np.random.default_rng(0).normal(size=(2, size, size, 1)).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert np.all(np.isfinite(y))
        stride_32 = (size // 32, size // 32) if len(y.shape) == 4 else ()
        assert y.shape == (2, *stride_32, expected_output_shape(name, options)[-1])


def test_builder_options_lists_explicit_keywords():
    assert builder_options("ghostnet_100") == {"img_channels": None, "out_channels": 1280}
    assert builder_options("resnet50") == {"img_channels": None, "width": 1.0}
    assert builder_options("hub") == {"hub_handle": None, "output_key": None}
    assert builder_options("efficientnetv2_b0") == {"weights": None}
    assert builder_options("inception_resnet_v2") == {"img_channels": None, "weights": None}
    with pytest.raises(KeyError, match="unknown backbone"):
        builder_options("ghostnet_999")


UNKNOWN_OPTIONS = [
    ("ghostnet_100", "dropout"),  # the neck's model.dropout does this: refused, not silently ignored
    ("efficientnetv2_b0", "out_channels"),
    ("hub", "hub_handel"),
    ("resnet50", "weights"),
    ("squeezenext_23_100", "width"),
    ("inception_resnet_v2", "pooling"),
]


def test_unknown_builder_option_is_a_type_error():
    for name, option in UNKNOWN_OPTIONS:
        assert option not in builder_options(name)
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{option}'"):
            get_backbone(name).builder((SIZE, SIZE, 3), **{option: 0.5})


def test_registry_refuses_catch_all_builders():
    def swallowing(input_shape, **unused):
        raise AssertionError("never called")

    def required_option(input_shape, depth):
        raise AssertionError("never called")

    for builder in (swallowing, required_option):
        with pytest.raises(TypeError, match="explicit keyword"):
            register_backbone("test_only_" + builder.__name__)(builder)
        assert "test_only_" + builder.__name__ not in list_backbones()


def test_option_errors_name_the_problem():
    with pytest.raises(ValueError, match="img_channels=1 contradicts"):
        get_backbone("resnet50").builder((SIZE, SIZE, 3), img_channels=1)
    with pytest.raises(ValueError, match="75"):
        get_backbone("inception_resnet_v2").builder((64, 64, 3))
    for name in ("inception_resnet_v2", "efficientnetv2_b0"):
        with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
            get_backbone(name).builder((96, 96, 3), weights="imagenet")


def test_full_model_on_a_registry_backbone():
    """build_model with a real backbone and builder options: predict on tf.data, one fit step, .keras."""
    cfg = Config()
    cfg.data.image_size = SIZE
    cfg.model.backbone = "resnet50"
    cfg.model.backbone_kwargs = {"width": TINY_WIDTH}
    x = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    labels = np.array([0, 1, 2, 1])
    model = run_task_test(lambda: build_model(cfg, num_classes=3), x, {"logits": labels},
                          {"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    assert model.get_layer("backbone").count_params() < 200_000  # the width option reached the builder
