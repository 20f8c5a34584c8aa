"""The two layouts every pipeline accepts: image folders and CSV tables. Contiguous class ids with
the mapping kept, the data set's own splits, and one clear error line per kind of bad input."""

import os

import numpy as np
import pandas as pd
import pytest

from keras_fgvc.data.sources import load
from keras_fgvc.errors import DataError


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\xff\xd8")


def folder_tree(root, files):
    for relative in files:
        touch(os.path.join(root, relative))


def test_imagefolder_maps_sorted_class_folders_to_contiguous_ids(tmp_path):
    folder_tree(tmp_path, ["zebra/1.jpg", "ant/b.PNG", "ant/a.jpeg", "moth/x.bmp", "moth/notes.txt", "moth/.hidden.jpg"])
    table = load("imagefolder", str(tmp_path))
    assert table.attrs["classes"] == ["ant", "moth", "zebra"]
    assert table["class_name"].tolist() == ["ant", "ant", "moth", "zebra"]
    assert table["label"].tolist() == [0, 0, 1, 2]
    assert table["path"].tolist() == [str(tmp_path / p) for p in ("ant/a.jpeg", "ant/b.PNG", "moth/x.bmp", "zebra/1.jpg")]


def test_imagefolder_splits_share_the_training_mapping(tmp_path):
    folder_tree(tmp_path, ["train/b/1.jpg", "train/a/1.jpg", "train/c/1.jpg", "val/c/2.jpg", "val/a/3.jpg"])
    val = load("imagefolder", str(tmp_path), "val")
    assert val["label"].tolist() == [0, 2] and val.attrs["classes"] == ["a", "b", "c"]
    with pytest.raises(DataError, match=r"test: folder not found \(this data set has no 'test' split\)"):
        load("imagefolder", str(tmp_path), "test")
    folder_tree(tmp_path, ["test/d/1.jpg"])
    with pytest.raises(DataError, match=r"test/d: class 'd' has no folder in .*train"):
        load("imagefolder", str(tmp_path), "test")


def test_imagefolder_refuses_empty_layouts_and_links_out_of_the_root(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load("imagefolder", str(tmp_path / "nowhere"))
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load("imagefolder", str(tmp_path / "data"))
    (tmp_path / "data" / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        load("imagefolder", str(tmp_path / "data"))
    touch(str(tmp_path / "outside.jpg"))
    os.symlink(tmp_path / "outside.jpg", tmp_path / "data" / "a" / "link.jpg")
    with pytest.raises(DataError, match=r"link.jpg' leads outside the data root"):
        load("imagefolder", str(tmp_path / "data"))


def write_csv(root, text, images=("a.jpg", "b.jpg", "c.jpg")):
    for name in images:
        touch(os.path.join(root, "img", name))
    (root / "train.csv").write_text(text)


def test_csv_reads_numeric_and_named_labels_with_missing_values(tmp_path):
    write_csv(tmp_path, "file,species,count\nimg/a.jpg,wren,1\nimg/b.jpg,,\nimg/c.jpg,finch,0\n")
    table = load("csv", str(tmp_path), path_column="file", label_columns=["species", "count"])
    assert table["path"].tolist() == [str(tmp_path / "img" / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert table.attrs["classes"] == {"species": ["finch", "wren"]}
    np.testing.assert_array_equal(table["species"].to_numpy(), [1.0, np.nan, 0.0])
    np.testing.assert_array_equal(table["count"].to_numpy(), [1.0, np.nan, 0.0])
    assert table["species_name"].tolist()[0] == "wren" and pd.isna(table["species_name"].iloc[1])


@pytest.mark.parametrize("text, message", [
    ("path,label\n", "no rows \\(only a header\\)"),
    ("file,label\nimg/a.jpg,1\n", "missing column\\(s\\) path; found file, label"),
    ("path,label\nimg/a.jpg,1\n,0\n", "row 3: column 'path' is empty"),
    ("path,label\nimg/a.jpg,1\n../secret.jpg,0\n", "row 3: path '../secret.jpg' leads outside the data root"),
    ("path,label\n/etc/passwd,0\n", "row 2: path '/etc/passwd' leads outside the data root"),
    ("path,label\nimg/a.jpg,1\nimg/zzz.jpg,0\n", "row 3: image .*img/zzz.jpg not found"),
    ("path,label\nimg/a.jpg,1\nimg/b.jpg,0\n./img/a.jpg,0\n", "row 4: duplicate path '.*/img/a.jpg' \\(first at row 2\\)"),
])
def test_csv_mistakes_name_the_file_and_row(tmp_path, text, message):
    write_csv(tmp_path, text)
    with pytest.raises(DataError, match=r"train.csv: " + message):
        load("csv", str(tmp_path))


def test_csv_missing_split_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"val.csv: file not found"):
        load("csv", str(tmp_path), "val")


def test_source_options_reach_the_loader_and_unknown_ones_are_named(tmp_path):
    from keras_fgvc.config.compose import compose
    from keras_fgvc.data.prepare import source_table

    folder_tree(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "train.csv").write_text("file,species\na.jpg,owl\nb.jpg,\n")
    cfg = compose(["data.format=csv", f"data.root={tmp_path}", "data.source_options.path_column=file",
                   "data.source_options.label_columns=[species]"])
    table = source_table(cfg, str(tmp_path))
    assert table["species"].tolist()[0] == 0.0 and np.isnan(table["species"].tolist()[1])
    with pytest.raises(DataError, match=r"^data.source_options.label_column: format 'csv' takes path_column, label_columns$"):
        compose(["data.format=csv", "data.source_options.label_column=x"])
