"""The Zalo 5K CSV layout: what is read, and one clear error line for each kind of bad input."""

import pandas as pd
import pytest

from keras_fgvc.data.sources import fivek, load
from keras_fgvc.errors import DataError


def write(root, rows, header="image_id,fname,mask,distancing,5k", images=("1.jpg", "2.jpg")):
    (root / "images").mkdir(exist_ok=True)
    for name in images:
        (root / "images" / name).write_bytes(b"\xff\xd8")
    (root / "train_meta.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


def test_reads_labels_with_missing_values_as_nan(tmp_path):
    write(tmp_path, ["1,1.jpg,1,,", "2,2.jpg,0,1,0"])
    table = load("fivek", str(tmp_path))
    assert table["mask"].tolist() == [1.0, 0.0]
    assert pd.isna(table["distancing"].iloc[0]) and table["distancing"].iloc[1] == 1.0
    assert table["path"].iloc[1] == str(tmp_path / "images" / "2.jpg")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"train_meta.csv: file not found"):
        fivek.load(str(tmp_path))


def test_missing_column_names_it(tmp_path):
    write(tmp_path, ["1,1.jpg,1,0"], header="image_id,fname,mask,distancing")
    with pytest.raises(DataError, match=r"train_meta.csv: missing column\(s\) 5k"):
        fivek.load(str(tmp_path))


@pytest.mark.parametrize("value, shown", [("yes", "'yes'"), ("7", "7"), ("0.5", "0.5")])
def test_bad_label_names_file_row_and_column(tmp_path, value, shown):
    write(tmp_path, ["1,1.jpg,1,,0", f"2,2.jpg,{value},0,0"])
    with pytest.raises(DataError) as error:
        fivek.load(str(tmp_path))
    assert str(error.value).endswith(f"train_meta.csv: row 3: column 'mask' must be 0, 1 or empty, got {shown}")


def test_missing_image_names_the_row_and_counts(tmp_path):
    write(tmp_path, ["1,1.jpg,1,0,0", "2,3.jpg,0,0,0"])
    with pytest.raises(DataError, match=r"row 3: image .*3.jpg not found \(1 of 2 images missing\)"):
        fivek.load(str(tmp_path))


def test_public_test_needs_no_labels_and_truth_is_optional(tmp_path):
    write(tmp_path, ["1,1.jpg,1,0,0"])
    (tmp_path / "public_test_meta.csv").write_text("image_id,fname\n7,2.jpg\n")
    test = fivek.load(str(tmp_path), split="test")
    assert test["image_id"].tolist() == [7] and "mask" not in test.columns
    assert fivek.load_truth(str(tmp_path)) is None


def test_a_duplicate_image_id_names_both_rows(tmp_path):
    write(tmp_path, ["1,1.jpg,1,0,0", "2,2.jpg,0,0,0", "1,2.jpg,0,0,0"])
    with pytest.raises(DataError, match=r"train_meta.csv: row 4: duplicate image_id '1' \(first at row 2\)"):
        fivek.load(str(tmp_path))


@pytest.mark.parametrize("fname", ["/etc/passwd", "../../outside.jpg"])
def test_a_file_name_leading_out_of_the_images_folder_is_refused(tmp_path, fname):
    write(tmp_path, ["1,1.jpg,1,0,0", f"2,{fname},0,0,0"])
    with pytest.raises(DataError, match=rf"train_meta.csv: row 3: path '{fname}' leads outside the data root"):
        fivek.load(str(tmp_path))
