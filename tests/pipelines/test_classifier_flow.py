"""The shared classifier flow's pieces that need no training: splits, dataset statistics, sweeps."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from keras_fgvc.config.compose import compose, compose_jobs, sweep
from keras_fgvc.config.validate import ConfigError
from keras_fgvc.data.normalization import with_dataset_statistics
from keras_fgvc.export.stage import stage_export_path
from keras_fgvc.pipelines.classifier import split_tables


def image_folder(root, per_class, splits=None, seed=0):
    """``root/<class>/*.png`` (or ``root/<split>/<class>/*.png``), each class a distinct grey level."""
    rng = np.random.default_rng(seed)
    for split, count in (splits or {None: per_class}).items():
        for index, name in enumerate(("ant", "bee", "cat")):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(60 * index + rng.integers(0, 40, (12, 12, 3)), 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def folder_cfg(root, *extra):
    return compose(["pipeline=cars", "smoke=true", "data.format=imagefolder", f"data.root={root}", *extra])


def test_a_flat_folder_gets_stratified_val_and_test_carved_from_train(tmp_path):
    root = image_folder(tmp_path / "flat", per_class=20)
    cfg = folder_cfg(root, "data.val_fraction=0.1", "data.test_fraction=0.25")
    tables = split_tables(cfg, str(root))
    assert {name: len(t) for name, t in tables.items()} == {"test": 15, "val": 6, "train": 39}
    for table, per_class in ((tables["test"], 5), (tables["val"], 2)):
        assert table["label"].value_counts().to_dict() == {0: per_class, 1: per_class, 2: per_class}
    paths = [set(t["path"]) for t in tables.values()]
    assert sum(map(len, paths)) == len(set().union(*paths)) == 60  # disjoint, nothing lost
    assert all(t.attrs["classes"] == ["ant", "bee", "cat"] for t in tables.values())
    again = split_tables(cfg, str(root))
    assert again["test"]["path"].tolist() == tables["test"]["path"].tolist()  # seeded


def test_a_data_set_with_its_own_test_split_keeps_it(tmp_path):
    root = image_folder(tmp_path / "split", per_class=0, splits={"train": 10, "test": 4})
    tables = split_tables(folder_cfg(root, "data.val_fraction=0.2"), str(root))
    assert len(tables["test"]) == 12 and all("/test/" in p for p in tables["test"]["path"])
    assert (len(tables["val"]), len(tables["train"])) == (6, 24)


def test_smoke_on_a_users_data_cuts_each_split_to_max_rows_keeping_every_class(tmp_path, capsys):
    root = image_folder(tmp_path / "flat", per_class=120)  # 360 rows: more than a smoke run takes
    cfg = folder_cfg(root, "data.val_fraction=0.1", "data.test_fraction=0.1")
    assert cfg.data.max_rows == 256  # every pipeline's smoke_settings
    tables = split_tables(cfg, str(root))
    assert {name: len(t) for name, t in tables.items()} == {"test": 36, "val": 33, "train": 256}
    assert tables["train"]["label"].value_counts().to_dict() == {0: 86, 1: 85, 2: 85}  # 1 + 85 each, +1
    assert tables["train"].attrs["classes"] == ["ant", "bee", "cat"]
    assert "data.max_rows=256: train uses 256 of 291 rows (stratified by 'label', seed 0)" in capsys.readouterr().out
    full = split_tables(folder_cfg(root, "data.val_fraction=0.1", "data.test_fraction=0.1", "data.max_rows=0"),
                        str(root))
    assert len(full["train"]) == 291 and set(tables["train"]["path"]) < set(full["train"]["path"])


@pytest.mark.parametrize("pipeline", ["fivek", "cars", "hotel_id", "vipriors", "squeeze"])
def test_every_smoke_config_limits_the_rows_it_reads(pipeline):
    assert compose([f"pipeline={pipeline}", "smoke=true"]).data.max_rows == 256
    assert compose([f"pipeline={pipeline}"]).data.max_rows == 0


def test_dataset_statistics_replace_mean_and_std_only_for_input_scale_dataset(tmp_path):
    root = image_folder(tmp_path / "flat", per_class=4)
    cfg = folder_cfg(root, f"data.cache_dir={tmp_path / 'cache'}")
    train = split_tables(cfg, str(root))["train"]
    measured = with_dataset_statistics(cfg, train)
    pixels = np.stack([np.asarray(Image.open(p), "float64") / 255 for p in train["path"]])
    # The PNGs are 12 px, resized to 32 px bilinearly: the mean survives resizing to ~1e-3.
    np.testing.assert_allclose(measured.model.mean, pixels.mean(axis=(0, 1, 2)), atol=2e-3)
    assert measured.model.std[0] > 0.1
    unit = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_scale="unit"))
    assert with_dataset_statistics(unit, train) is unit


def test_a_sweep_is_the_product_of_its_values_in_command_line_order():
    jobs = sweep(["pipeline=cars", "model.dropout=0.1,0.2", "seed=0", "train.weight_decay=0.5,0.6"])
    assert [suffix for _, suffix in jobs] == [
        "model.dropout=0.1,train.weight_decay=0.5", "model.dropout=0.1,train.weight_decay=0.6",
        "model.dropout=0.2,train.weight_decay=0.5", "model.dropout=0.2,train.weight_decay=0.6"]
    assert jobs[1][0] == ["pipeline=cars", "seed=0", "model.dropout=0.1", "train.weight_decay=0.6"]


def test_each_sweep_job_gets_its_own_run_folder_and_export_folder():
    configs = compose_jobs(["pipeline=cars", "smoke=true", "model.dropout=0.1,0.3"], multirun=True)
    assert [c.model.dropout for c in configs] == [0.1, 0.3]
    assert [c.name for c in configs] == ["smoke-model.dropout=0.1", "smoke-model.dropout=0.3"]
    assert len({c.run_dir for c in configs}) == len({stage_export_path(c, "train") for c in configs}) == 2


def test_a_sweep_without_m_and_a_bad_value_in_any_job_are_refused_before_running():
    with pytest.raises(ConfigError, match="'model.dropout=0.1,0.2' is a sweep.*-m"):
        compose_jobs(["pipeline=cars", "model.dropout=0.1,0.2"])
    with pytest.raises(ConfigError, match="augment.preset"):
        compose_jobs(["pipeline=cars", "augment.preset=cars,carz"], multirun=True)
