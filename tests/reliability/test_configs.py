"""Impossible values of every pipeline's own keys are one ConfigError line at compose time, before
anything is written (the generic keys are tested in tests/config/test_config.py)."""

import pytest

from keras_fgvc.config.compose import compose
from keras_fgvc.config.validate import ConfigError


@pytest.mark.parametrize("overrides, line", [
    (["pipeline=hotel_id", "hotel_id.k=0"], "config key 'hotel_id.k' = 0: must be >= 1"),
    (["pipeline=fivek", "pseudo_label.threshold=1.5"], "config key 'pseudo_label.threshold' = 1.5: must be >= 0 and <= 1"),
    (["pipeline=fivek", "data.max_rows=-1"], "config key 'data.max_rows' = -1: must be >= 0"),
])
def test_an_impossible_pipeline_value_is_one_line(overrides, line):
    with pytest.raises(ConfigError) as error:
        compose(overrides)
    assert str(error.value) == line
