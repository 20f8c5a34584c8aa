import numpy as np
import pytest

from keras_fgvc.models.backbones.ghostnet import GhostNet, make_divisible


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# timm ghostnet_050/100/130 at 1000 classes (sum of parameter numels; BN running stats excluded).
@pytest.mark.parametrize("width,expected", [(0.5, 2_587_292), (1.0, 5_182_508), (1.3, 7_358_820)])
def test_trainable_params_equal_timm(width, expected):
    assert trainable_count(GhostNet(width=width, input_shape=(224, 224))) == expected


def test_cars_thesis_head_has_3_04m_params():
    # Seed 001: 196 classes, out_channels 320 -> "3.04M params".
    model = GhostNet(width=1.0, num_classes=196, out_channels=320, input_shape=(227, 227))
    assert round(trainable_count(model) / 1e6, 2) == 3.04


def test_greyscale_input_and_pre_logits_output():
    model = GhostNet(width=0.5, img_channels=1, out_channels=48, include_top=False, input_shape=(32, 32))
    y = model(np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype("float32"))
    assert tuple(y.shape) == (2, 48)
    assert np.all(np.asarray(y) >= 0)  # ReLU after the head conv
    assert model.get_layer("stem_conv").kernel.shape == (3, 3, 1, 8)


def test_make_divisible_rounding():
    # timm rule: nearest multiple of 4, never below 90% of the request.
    assert [make_divisible(v) for v in (8, 9.6, 20.8, 62.4, 1248)] == [8, 12, 20, 64, 1248]  # 9.6 -> 8 would drop >10%
    assert make_divisible(3) == 4
