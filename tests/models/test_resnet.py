import keras
import numpy as np
import pytest

from keras_fgvc.models.backbones.resnet import ResNet, SplitAttention
from tests.harness import run_layer_test
from tests.models.test_ghostnet import trainable_count


# torchvision (resnet50, resnext50_32x4d, resnet101) and timm (seresnext50_32x4d, resnest50d)
# parameter counts at 1000 classes.
@pytest.mark.parametrize(
    "variant,expected",
    [
        ("resnet50", 25_557_032),
        ("resnext50_32x4d", 25_028_904),
        ("seresnext50_32x4d", 27_559_896),
        ("resnest50d", 27_483_240),
        ("resnet101", 44_549_160),
    ],
)
def test_trainable_params_equal_reference(variant, expected):
    assert trainable_count(ResNet(variant, input_shape=(224, 224))) == expected


def test_split_attention_of_identical_splits_returns_the_split():
    # Softmax weights over the radix sum to 1, so if both splits are equal the output is that split.
    layer = SplitAttention(4, radix=2, groups=1)
    half = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    x = np.concatenate([half, half], axis=-1)
    layer(x)
    kernel = layer.conv.kernel.numpy()
    kernel[..., 4:] = kernel[..., :4]
    layer.conv.kernel.assign(kernel)
    split = keras.ops.relu(layer.bn(layer.conv(x), training=False))[..., :4]
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(split), atol=1e-5)


def test_split_attention_radix1_is_a_sigmoid_gate():
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 8)).astype("float32")
    layer = SplitAttention(8, radix=1, groups=2, strides=2)
    y = np.asarray(layer(x))
    assert y.shape == (2, 3, 3, 8)
    features = np.asarray(keras.ops.relu(layer.bn(layer.conv(x), training=False)))
    gate = y / np.where(features == 0, 1, features)
    assert np.all((gate[features > 0] > 0) & (gate[features > 0] < 1))


@pytest.mark.parametrize("radix,groups,strides,expected_hw", [(1, 2, 2, 3), (2, 1, 1, 5), (2, 2, 2, 3)])
def test_split_attention_layer_contract(radix, groups, strides, expected_hw):
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 8)).astype("float32")
    run_layer_test(SplitAttention, {"filters": 8, "radix": radix, "groups": groups, "strides": strides}, x,
                   expected_output_shape=(2, expected_hw, expected_hw, 8), expected_output_dtype="float32")


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="known"):
        ResNet("resnet9000")
