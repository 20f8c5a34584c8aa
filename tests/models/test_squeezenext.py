import pytest

from keras_fgvc.models.backbones.squeezenext import SqueezeNext
from tests.models.test_ghostnet import trainable_count


# Reference counts for 1000 classes at 224 px (1.0/2.0-SqNxt-23v5); the 23 (v1) rows are the same
# reference's counts for the plain SqNxt-23 (724,056 and 2,583,752).
@pytest.mark.parametrize(
    "width,version,expected",
    [(1.0, "v5", 921_816), (2.0, "v5", 3_366_344), (1.0, "v1", 724_056), (2.0, "v1", 2_583_752)],
)
def test_trainable_params_within_one_percent_of_reference(width, version, expected):
    count = trainable_count(SqueezeNext(width=width, depth=23, version=version, input_shape=(224, 224)))
    assert abs(count - expected) <= 0.01 * expected


def test_unit_table_sets_depth():
    # 23 layers = stem + 21 units + classifier; v5 has [2, 4, 14, 1] units per stage.
    model = SqueezeNext(depth=23, version="v5", input_shape=(64, 64))
    units = {layer.name.split("_unit")[0] + "_unit" + layer.name.split("_unit")[1].split("_")[0]
             for layer in model.layers if "_unit" in layer.name}
    per_stage = [sum(u.startswith(f"stage{s}_") for u in units) for s in range(1, 5)]
    assert per_stage == [2, 4, 14, 1]


def test_unknown_version_is_a_clear_error():
    with pytest.raises(ValueError, match="known"):
        SqueezeNext(depth=23, version="v9")
