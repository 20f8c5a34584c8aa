"""Stanford Cars (both .mat layouts) and the VIPriors ImageNet subset, written here in their real layouts:
MATLAB's 1-based classes and inclusive boxes become the Table's 0..K-1 labels and 0-based exclusive boxes,
and every kind of bad input is one DataError naming the file and the record."""

import os

import numpy as np
import pytest
import scipy.io

from keras_fgvc.data.sources import load
from keras_fgvc.errors import DataError

NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi S4 Sedan 2012"]
# (relative_im_path, x1, y1, x2, y2, class, test) as cars_annos.mat stores them: 1-based, inclusive.
COMBINED = [
    ("car_ims/000001.jpg", 1, 1, 100, 50, 1, 0),  # a box from the first pixel: x1 - 1 must not wrap (uint16)
    ("car_ims/000002.jpg", 12, 30, 240, 180, 3, 1),
    ("car_ims/000003.jpg", 5, 7, 64, 48, 2, 0),
    ("car_ims/000004.jpg", 20, 21, 22, 23, 3, 0),
    ("car_ims/000005.jpg", 9, 8, 70, 60, 1, 1),
]


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\xff\xd8")


def struct_array(fields, rows):
    """A 1 x N MATLAB struct array, numbers in the real files' integer types (uint16 boxes, uint8 class)."""
    array = np.empty((1, len(rows)), dtype=[(field, object) for field in fields])
    for i, row in enumerate(rows):
        array[0, i] = tuple(
            value if isinstance(value, str) else (np.uint8(value) if field in ("class", "test") else np.uint16(value))
            for field, value in zip(fields, row)
        )
    return array


def cell(names):
    array = np.empty((1, len(names)), dtype=object)
    array[0, :] = names
    return array


def write_combined(root, rows=COMBINED, names=NAMES, fields=None, images=True):
    fields = fields or ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": struct_array(fields, rows), "class_names": cell(names)})
    if images:
        for row in rows:
            touch(str(root / row[0]))


DEVKIT_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
DEVKIT_TRAIN = [(39, 116, 569, 375, 3, "00001.jpg"), (36, 116, 868, 587, 1, "00002.jpg"), (1, 2, 3, 4, 2, "00003.jpg")]
DEVKIT_TEST = [(30, 52, 246, 147, 2, "00001.jpg"), (100, 19, 576, 203, 3, "00002.jpg")]


def write_devkit(root, test_file="cars_test_annos_withlabels.mat", train=DEVKIT_TRAIN, test=DEVKIT_TEST):
    (root / "devkit").mkdir(exist_ok=True)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": cell(NAMES)})
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(DEVKIT_FIELDS, train)})
    if test_file:
        scipy.io.savemat(root / test_file, {"annotations": struct_array(DEVKIT_FIELDS, test)})
    for folder, rows in (("cars_train", train), ("cars_test", test)):
        for row in rows:
            touch(str(root / folder / row[-1]))


def test_combined_layout_gives_zero_based_labels_and_exclusive_boxes(tmp_path):
    write_combined(tmp_path)
    train = load("stanford_cars", str(tmp_path))
    assert train["path"].tolist() == [str(tmp_path / "car_ims" / f"00000{i}.jpg") for i in (1, 3, 4)]
    assert train["label"].tolist() == [0, 1, 2] and train["label"].dtype == np.int64
    assert train["class_name"].tolist() == [NAMES[0], NAMES[1], NAMES[2]]
    assert train["image_id"].tolist() == ["000001", "000003", "000004"]
    boxes = train[["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].to_numpy()
    np.testing.assert_array_equal(boxes, [[0, 0, 100, 50], [4, 6, 64, 48], [19, 20, 22, 23]])
    assert train.attrs["classes"] == NAMES
    test = load("stanford_cars", str(tmp_path), "test")
    assert test["image_id"].tolist() == ["000002", "000005"]
    assert test["label"].tolist() == [2, 0] and test.attrs["classes"] == NAMES
    np.testing.assert_array_equal(test[["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].to_numpy(),
                                  [[11, 29, 240, 180], [8, 7, 70, 60]])


@pytest.mark.parametrize("test_file", ["cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"])
def test_devkit_layout_reads_both_splits_with_the_meta_class_names(tmp_path, test_file):
    write_devkit(tmp_path, test_file=test_file)
    train = load("stanford_cars", str(tmp_path), "train")
    assert train["path"].tolist() == [str(tmp_path / "cars_train" / f"0000{i}.jpg") for i in (1, 2, 3)]
    assert train["label"].tolist() == [2, 0, 1]
    assert train["class_name"].tolist() == [NAMES[2], NAMES[0], NAMES[1]]
    assert train["image_id"].tolist() == ["00001", "00002", "00003"]
    np.testing.assert_array_equal(train[["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].to_numpy(),
                                  [[38, 115, 569, 375], [35, 115, 868, 587], [0, 1, 3, 4]])
    test = load("stanford_cars", str(tmp_path), "test")
    # Same file names as train, but the test split's own folder.
    assert test["path"].tolist() == [str(tmp_path / "cars_test" / f"0000{i}.jpg") for i in (1, 2)]
    assert test["label"].tolist() == [1, 2] and test.attrs["classes"] == NAMES
    np.testing.assert_array_equal(test[["bbox_x1", "bbox_x2"]].to_numpy(), [[29, 246], [99, 576]])


def test_combined_file_wins_over_the_devkit(tmp_path):
    write_devkit(tmp_path)
    write_combined(tmp_path)
    assert load("stanford_cars", str(tmp_path))["image_id"].tolist() == ["000001", "000003", "000004"]


def test_one_record_and_one_class_survive_matlab_squeezing(tmp_path):
    # squeeze_me turns a 1 x 1 struct into a 0-d array and a 1 x 1 cell into a bare string.
    write_combined(tmp_path, rows=[("car_ims/000001.jpg", 3, 4, 30, 40, 1, 0)], names=["Only Car 2001"])
    table = load("stanford_cars", str(tmp_path))
    assert table.attrs["classes"] == ["Only Car 2001"] and table["label"].tolist() == [0]
    assert table[["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].iloc[0].tolist() == [2.0, 3.0, 30.0, 40.0]


@pytest.mark.parametrize("record, column, value, message", [
    (1, 5, 4, r"cars_annos\.mat: record 2: class 4 is outside 1\.\.3 \(the 3 class_names\) \(1 of 5 records\)"),
    (3, 5, 0, r"cars_annos\.mat: record 4: class 0 is outside 1\.\.3"),
    (0, 6, 2, r"cars_annos\.mat: record 1: field 'test' must be 0 or 1, got 2"),
    (2, 3, 4, r"cars_annos\.mat: record 3: empty box x 5\.\.4, y 7\.\.48"),
    (4, 5, "three", r"cars_annos\.mat: record 5: field 'class' must be one number, got 'three'"),
    (0, 0, "../outside.jpg", r"cars_annos\.mat: record 1: path '\.\./outside\.jpg' leads outside the data root"),
])
def test_bad_combined_records_name_the_file_and_record(tmp_path, record, column, value, message):
    rows = list(COMBINED)
    row = list(rows[record])
    row[column] = value
    rows[record] = tuple(row)
    write_combined(tmp_path, rows=rows, images=False)
    for name in ("000001", "000002", "000003", "000004", "000005"):
        touch(str(tmp_path / "car_ims" / f"{name}.jpg"))
    with pytest.raises(DataError, match=message):
        load("stanford_cars", str(tmp_path))


def test_missing_image_names_the_record_and_the_count(tmp_path):
    write_combined(tmp_path)
    os.remove(tmp_path / "car_ims" / "000004.jpg")
    with pytest.raises(DataError, match=r"cars_annos\.mat: record 4: image .*car_ims/000004\.jpg not found "
                                        r"\(1 of 3 images missing\)"):
        load("stanford_cars", str(tmp_path))
    # The test split does not use that image, so it still loads.
    assert len(load("stanford_cars", str(tmp_path), "test")) == 2


def test_devkit_class_out_of_range_names_the_annotation_file(tmp_path):
    write_devkit(tmp_path, train=[*DEVKIT_TRAIN, (1, 1, 9, 9, 197, "00004.jpg")])
    with pytest.raises(DataError, match=r"devkit/cars_train_annos\.mat: record 4: class 197 is outside 1\.\.3"):
        load("stanford_cars", str(tmp_path))


@pytest.mark.parametrize("setup, split, message", [
    (lambda root: None, "train",
     (r"no Stanford Cars annotations \(expected either cars_annos\.mat \+ car_ims/ \(combined layout\) or "
      r"devkit/cars_meta\.mat, devkit/cars_train_annos\.mat \+ cars_train/ and cars_test_annos_withlabels\.mat")),
    (lambda root: write_devkit(root, test_file=None), "test",
     r"cars_test_annos_withlabels\.mat or .*devkit/cars_test_annos_withlabels\.mat: file not found"),
    (lambda root: (root / "cars_annos.mat").write_bytes(b"not a MATLAB file at all" * 8), "train",
     r"cars_annos\.mat: cannot read MATLAB file"),
    (lambda root: scipy.io.savemat(root / "cars_annos.mat", {"annotations": struct_array(("class",), [(1,)])}),
     "train", r"cars_annos\.mat: no 'class_names' variable \(found annotations\)"),
    (lambda root: write_combined(root, fields=("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class"),
                                 rows=[row[:6] for row in COMBINED]), "train",
     r"cars_annos\.mat: 'annotations' lacks field\(s\) test; found relative_im_path, bbox_x1"),
    (lambda root: write_combined(root, rows=[row[:6] + (0,) for row in COMBINED]), "test",
     r"cars_annos\.mat: no record has test = 1 \(the test split is empty\)"),
    (lambda root: write_combined(root), "val", r"stanford_cars has splits train, test; got 'val'"),
])
def test_missing_or_malformed_files_say_what_the_layout_expects(tmp_path, setup, split, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        load("stanford_cars", str(tmp_path), split)


def vipriors_tree(root, files):
    for relative in files:
        touch(str(root / relative))


VIPRIORS = ["train/n01530575/n01530575_10.JPEG", "train/n01530575/n01530575_7.JPEG",
            "train/n01440764/n01440764_1.JPEG", "train/n02102040/n02102040_3.JPEG",
            "val/n02102040/n02102040_99.JPEG", "val/n01440764/n01440764_55.JPEG",
            "test/ILSVRC2012_val_00000002.JPEG", "test/ILSVRC2012_val_00000001.JPEG", "test/readme.txt"]


def test_vipriors_train_and_val_share_the_sorted_wnid_mapping(tmp_path):
    vipriors_tree(tmp_path, VIPRIORS)
    train = load("imagenet_subset", str(tmp_path), "train")
    classes = ["n01440764", "n01530575", "n02102040"]
    assert train.attrs["classes"] == classes
    assert train["label"].tolist() == [0, 1, 1, 2]
    assert train["class_name"].tolist() == ["n01440764", "n01530575", "n01530575", "n02102040"]
    assert train["image_id"].tolist() == ["n01440764_1.JPEG", "n01530575_10.JPEG", "n01530575_7.JPEG",
                                          "n02102040_3.JPEG"]
    assert train["path"].iloc[0] == str(tmp_path / "train" / "n01440764" / "n01440764_1.JPEG")
    val = load("imagenet_subset", str(tmp_path), "val")
    assert val["label"].tolist() == [0, 2] and val.attrs["classes"] == classes
    assert val["image_id"].tolist() == ["n01440764_55.JPEG", "n02102040_99.JPEG"]


def test_vipriors_test_split_is_flat_and_unlabelled(tmp_path):
    vipriors_tree(tmp_path, VIPRIORS)
    test = load("imagenet_subset", str(tmp_path), "test")
    assert test["image_id"].tolist() == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    assert test["path"].tolist() == [str(tmp_path / "test" / name) for name in test["image_id"]]
    assert test["label"].dtype == np.float64 and test["label"].isna().all()
    assert test["class_name"].isna().all()
    assert test.attrs["classes"] == ["n01440764", "n01530575", "n02102040"]


@pytest.mark.parametrize("files, split, message", [
    (["n01440764/a.JPEG"], "train",
     r"train: folder not found \(expected the VIPriors layout train/<wnid>/\*\.JPEG, val/<wnid>/\*\.JPEG, test"),
    (VIPRIORS[:4], "test", r"test: folder not found \(expected the VIPriors layout"),
    (VIPRIORS[:6] + ["test/notes.txt"], "test", r"test: no images \(the test split is one flat folder"),
    (VIPRIORS[:6] + ["val/n09999999/x.JPEG"], "val", r"val/n09999999: class 'n09999999' has no folder in .*train"),
    (VIPRIORS, "holdout", r"imagenet_subset has splits train, val, test; got 'holdout'"),
])
def test_vipriors_layout_errors_name_the_folder(tmp_path, files, split, message):
    vipriors_tree(tmp_path, files)
    with pytest.raises(DataError, match=message):
        load("imagenet_subset", str(tmp_path), split)


def test_vipriors_test_table_columns_match_the_labelled_splits(tmp_path):
    vipriors_tree(tmp_path, VIPRIORS)
    columns = [list(load("imagenet_subset", str(tmp_path), split).columns) for split in ("train", "val", "test")]
    assert columns[0] == columns[1] == columns[2] == ["path", "label", "class_name", "image_id"]


@pytest.mark.parametrize("fmt, files, split", [
    ("imagenet_subset", VIPRIORS, "train"),
    ("imagenet_subset", VIPRIORS, "test"),
    ("imagefolder", ["train/a/1.jpg", "train/b/2.jpg", "val/a/3.jpg"], "val"),
])
def test_a_data_root_relative_to_the_working_directory_gives_paths_that_exist(tmp_path, monkeypatch, fmt, files, split):
    # The default data roots are relative (data/demo/...); the folder was once joined onto the root twice.
    vipriors_tree(tmp_path / "project" / "data", files)
    monkeypatch.chdir(tmp_path / "project")
    table = load(fmt, "data", split)
    assert len(table) and all(os.path.isfile(path) and os.path.isabs(path) for path in table["path"])
    assert all(path.startswith(str(tmp_path / "project" / "data" / split) + os.sep) for path in table["path"])
