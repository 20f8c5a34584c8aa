import numpy as np
import pytest
from PIL import Image

from keras_fgvc.evaluation import confusion_matrix
from keras_fgvc.tracking.plots_confusion import confusion_plot


def test_draws_row_normalised_matrix_from_counts(tmp_path):
    cm = confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 0], num_classes=3)
    drawn = confusion_plot(cm, tmp_path / "plots" / "cm.png", ["a", "b", "c"], title="held-out")
    np.testing.assert_allclose(drawn, [[2 / 3, 1 / 3, 0], [0, 1, 0], [1, 0, 0]])
    image = Image.open(tmp_path / "plots" / "cm.png")
    assert image.format == "PNG" and image.size == (int(3.5 * 80), int(3.5 * 80))


def test_different_matrices_give_different_pictures_and_empty_rows_are_zero(tmp_path):
    diagonal = confusion_plot(np.diag([4, 4]), tmp_path / "a.png")
    swapped = confusion_plot(np.array([[0, 4], [0, 0]]), tmp_path / "b.png")
    np.testing.assert_array_equal(diagonal, np.eye(2))
    np.testing.assert_array_equal(swapped, [[0, 1], [0, 0]])
    a = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"), dtype=int)
    b = np.asarray(Image.open(tmp_path / "b.png").convert("RGB"), dtype=int)
    assert np.abs(a - b).mean() > 1.0


def test_rejects_non_square_and_mismatched_names(tmp_path):
    with pytest.raises(ValueError, match="square"):
        confusion_plot(np.zeros((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 class names for a 2-class matrix"):
        confusion_plot(np.eye(2), tmp_path / "x.png", ["a", "b", "c"])
