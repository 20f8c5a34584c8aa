import keras
import pytest

from keras_fgvc.export.model_card import count_macs, format_model_card, model_card
from keras_fgvc.models.backbones.ghostnet import GhostNet


def hand_counted_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 * 4 * 3*3*3 = 6,912
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", groups=2)(x)  # 4*4 * 8 * 9*2 = 2,304
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)  # 4*4 * 16 * 9 = 2,304
    x = keras.layers.SeparableConv2D(6, 3, padding="valid")(x)  # 2*2 * 16 * (9 + 6) = 960
    x = keras.layers.BatchNormalization()(x)  # not a MAC
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])  # nested: 6 * 5 = 30
    x = inner(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(2)(x))  # 5 * 2 = 10


def test_macs_match_hand_count_for_every_layer_kind():
    assert count_macs(hand_counted_model(), (8, 8, 3)) == 6912 + 2304 + 2304 + 960 + 30 + 10


def test_macs_of_ghostnet_and_mobilenetv3_match_papers():
    # GhostNet 1.0x: 141M MACs (Han et al. 2020, Table 7); MobileNetV3-Large 1.0: 219M
    # (Howard et al. 2019, Table 3). Our walk counts SE convs and the classifier too.
    assert count_macs(GhostNet(), (224, 224, 3)) / 1e6 == pytest.approx(141, rel=0.03)
    mobilenet = keras.applications.MobileNetV3Large(weights=None, input_shape=(224, 224, 3))
    assert count_macs(mobilenet, (224, 224, 3)) / 1e6 == pytest.approx(219, rel=0.03)


def test_card_fields_and_table():
    model = hand_counted_model()
    card = model_card(model, input_shape=(8, 8), batch_sizes=(1, 4), min_seconds=0.05)
    weights = model.get_weights()
    assert card["total_params"] == sum(w.size for w in weights)
    # BatchNorm moving mean/variance (2 x 6) are the only non-trainable weights.
    assert card["trainable_params"] == card["total_params"] - 12
    assert card["size_mb_float32"] == pytest.approx(card["total_params"] * 4 / 1e6)
    assert card["input_shape"] == (8, 8, 3)
    assert set(card["images_per_second"]) == {1, 4}
    assert all(v > 0 for v in card["images_per_second"].values())
    text = format_model_card(card)
    assert "MACs" in text and f"{card['total_params']:,}" in text and "images/s @ batch 4" in text


def test_free_input_size_needs_explicit_shape():
    model = GhostNet(width=0.5, include_top=False, out_channels=16)
    with pytest.raises(ValueError, match="input_shape"):
        model_card(model, batch_sizes=())
    assert model_card(model, (32, 32), batch_sizes=())["macs"] == count_macs(model, (32, 32, 3))


def test_card_lists_tflite_file_sizes(tmp_path):
    # Stand-in files of known byte counts: the card reports size / 10^6, like size_mb_float32.
    float_path, int8_path = tmp_path / "model_float32.tflite", tmp_path / "model_int8.tflite"
    float_path.write_bytes(b"\0" * 1_500_000)
    int8_path.write_bytes(b"\0" * 420_000)
    model = hand_counted_model()
    card = model_card(model, (8, 8), batch_sizes=(), tflite_paths={"float32": str(float_path), "int8": str(int8_path)})
    assert card["tflite_size_mb"] == {"float32": 1.5, "int8": 0.42}
    text = format_model_card(card)
    lines = {line.split("  ")[0]: line.split()[-2] for line in text.splitlines() if "TFLite" in line}
    assert lines == {"size (TFLite float32)": "1.50", "size (TFLite int8)": "0.42"}
    assert "TFLite" not in format_model_card(model_card(model, (8, 8), batch_sizes=()))
