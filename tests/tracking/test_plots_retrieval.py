import types

import numpy as np
import pytest
from PIL import Image

from keras_fgvc.tracking.figures import pyplot
from keras_fgvc.tracking.plots_retrieval import (
    CELL_HEIGHT_INCHES,
    CELL_WIDTH_INCHES,
    CURVE_SIZE_INCHES,
    DPI,
    TITLE_HEIGHT_INCHES,
    _metric_figure,
    _retrieval_figure,
    metric_curve,
    retrieval_grid,
)

CELL_W, CELL_H = int(CELL_WIDTH_INCHES * DPI), int(CELL_HEIGHT_INCHES * DPI)


def grey(height=40, width=40):
    return np.full((height, width, 3), 128, np.uint8)


def match(label, score, image=None):
    return {"image": grey() if image is None else image, "label": label, "score": score}


def read_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=int)


def green_and_red_counts(pixels):
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    green = (g >= 120) & (r < 60) & (b < 60)
    red = (r >= 180) & (g < 60) & (b < 60)
    return int(green.sum()), int(red.sum())


def test_hit_is_framed_green_and_miss_red_in_their_own_cells(tmp_path):
    queries = [{"image": grey(), "label": "hotel_7"}]
    results = [[match("hotel_7", 0.91), match("hotel_2", 0.55)]]
    path = retrieval_grid(queries, results, tmp_path / "plots" / "grid.png")
    assert path == tmp_path / "plots" / "grid.png"

    pixels = read_rgb(path)
    assert pixels.shape == (CELL_H, 3 * CELL_W, 3)
    query_cell, hit_cell, miss_cell = (pixels[:, c * CELL_W:(c + 1) * CELL_W] for c in range(3))
    assert green_and_red_counts(query_cell) == (0, 0)
    hit_green, hit_red = green_and_red_counts(hit_cell)
    miss_green, miss_red = green_and_red_counts(miss_cell)
    # A 5 pt frame round a ~150 px box is a few thousand pixels; 500 leaves room for antialiasing.
    assert hit_green > 500 and hit_red == 0
    assert miss_red > 500 and miss_green == 0


def test_subtitles_give_label_and_two_decimal_score_and_outcomes_follow_labels():
    queries = [{"image": grey(), "label": "a"}, {"image": grey(), "label": None}]
    results = [[match("b", 0.5), match("a", 0.25)], [match("a", 0.987)]]
    figure, outcomes = _retrieval_figure(queries, results)
    try:
        assert outcomes == [["miss", "hit"], [None]]
        titles = [[axis.get_title() for axis in row] for row in np.asarray(figure.axes).reshape(2, 3)]
        assert titles[0] == ["query: a", "b  0.50", "a  0.25"]
        assert titles[1][:2] == ["query", "a  0.99"]
    finally:
        pyplot().close(figure)


def test_unknown_query_label_draws_no_frames_and_title_adds_its_band(tmp_path):
    queries = [{"image": grey(60, 30), "label": None}]
    results = [[match("a", 0.9, grey(30, 80)), match("b", 0.8)]]
    path = retrieval_grid(queries, results, tmp_path / "test.png", title="Kaggle test")
    pixels = read_rgb(path)
    assert pixels.shape == (CELL_H + int(TITLE_HEIGHT_INCHES * DPI), 3 * CELL_W, 3)
    assert green_and_red_counts(pixels) == (0, 0)


def test_max_rows_keeps_the_first_queries_and_sizes_columns_from_them(tmp_path):
    queries = [{"image": grey(), "label": f"q{i}"} for i in range(5)]
    # The dropped third query has 6 matches; the kept ones have at most 3, so the grid is 1 + 3 columns wide.
    results = [[match("q0", 0.9)], [match("x", 0.7)] * 3, [match("q2", 0.5)] * 6, [], []]
    path = retrieval_grid(queries, results, tmp_path / "grid.png", max_rows=2)
    assert Image.open(path).size == (4 * CELL_W, 2 * CELL_H)
    figure, outcomes = _retrieval_figure(queries, results, max_rows=2)
    pyplot().close(figure)
    assert outcomes == [["hit"], ["miss", "miss", "miss"]]
    assert Image.open(retrieval_grid(queries, results, tmp_path / "all.png")).size == (7 * CELL_W, 5 * CELL_H)


def test_saving_replaces_the_file_and_leaves_no_temporary(tmp_path):
    queries = [{"image": grey(), "label": "a"}]
    first = retrieval_grid(queries, [[match("a", 0.9)]], tmp_path / "grid.png")
    before = read_rgb(first)
    retrieval_grid(queries, [[match("b", 0.9)]], tmp_path / "grid.png")
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    assert not np.array_equal(before, read_rgb(tmp_path / "grid.png"))


def test_grid_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="2 queries but 1 result lists"):
        retrieval_grid([{"image": grey(), "label": "a"}] * 2, [[]], tmp_path / "x.png")
    with pytest.raises(ValueError, match="uint8"):
        retrieval_grid([{"image": grey().astype(np.float32), "label": "a"}], [[]], tmp_path / "x.png")
    with pytest.raises(ValueError, match="max_rows"):
        retrieval_grid([{"image": grey(), "label": "a"}], [[]], tmp_path / "x.png", max_rows=0)
    assert not (tmp_path / "x.png").exists()


def test_metric_curve_marks_the_best_epoch(tmp_path):
    history = {"val_map5": [0.21, 0.34, 0.31, 0.34], "loss": [3.0, 2.0, 1.5, 1.2]}
    figure, best = _metric_figure(history, "val_map5")
    try:
        assert best == {"epoch": 2, "value": 0.34}  # first of the tied maxima
        axis = figure.axes[0]
        np.testing.assert_allclose(axis.collections[0].get_offsets(), [[2, 0.34]])
        assert [text.get_text() for text in axis.texts] == ["best 0.3400 @ epoch 2"]
        np.testing.assert_array_equal(axis.lines[0].get_xdata(), [1, 2, 3, 4])
    finally:
        pyplot().close(figure)

    path = metric_curve(history, "val_map5", tmp_path / "curves" / "val_map5.png", title="MAP@5")
    assert path == tmp_path / "curves" / "val_map5.png"
    assert Image.open(path).size == (int(CURVE_SIZE_INCHES[0] * DPI), int(CURVE_SIZE_INCHES[1] * DPI))


def test_metric_curve_reads_keras_history_and_skips_nan_epochs():
    keras_like = types.SimpleNamespace(history={"val_map5": [0.1, float("nan"), 0.05]})
    figure, best = _metric_figure(keras_like, "val_map5")
    pyplot().close(figure)
    assert best == {"epoch": 1, "value": 0.1}


def test_metric_curve_missing_or_empty_key_names_what_exists(tmp_path):
    with pytest.raises(ValueError, match=r"no 'val_map5'; available keys: \['loss', 'val_loss'\]"):
        metric_curve({"val_loss": [1.0], "loss": [2.0]}, "val_map5", tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite"):
        metric_curve({"val_map5": []}, "val_map5", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
