"""One run as a user makes it, through ``run.py``: pipeline=cars on the user's own image folder,
which holds every kind of bad file, with W&B offline and a (fake) WANDB_API_KEY in the environment.

- The bad files are skipped and listed by path and reason, the odd-but-valid ones (PNG named .jpg,
  CMYK, greyscale, 16-bit, RGBA, EXIF-rotated, 10,000 x 10,000) train, and the run finishes;
  ``data.strict=true`` stops at the first bad file with its path, before anything trains.
- The key never lands in anything the run wrote (run, export, caches, W&B's folders, stdout, stderr).

One run serves both (a pipeline run costs ~50 s on 2 cores)."""

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.fixtures import bad_images
from tests.pipelines.cli import ROOT, run_cli
from tests.reliability.test_security import files_containing

CLASSES = ("ant", "bee", "cat")


def args(root, *extra):
    return ["pipeline=cars", "smoke=true", "data.format=imagefolder", f"data.root={root}/data",
            "data.val_fraction=0.2", "data.test_fraction=0.2", f"data.cache_dir={root}/cache",
            f"runs_root={root}/runs", f"export.dir={root}/saved", *extra]


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """3 class folders of 6 clean images plus every bad_images file in the first; the run's result."""
    root = tmp_path_factory.mktemp("user_data")
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        (root / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(70 * index + rng.integers(0, 50, (24, 24, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / "data" / name / f"{i}.png")
    files = bad_images.write(str(root / "data" / CLASSES[0]))
    bad = {path: reason for path, reason in files.values() if isinstance(reason, str) and os.path.exists(path)}
    key = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # 40 hex characters, the shape of a real W&B key
    env = {**os.environ, "WANDB_API_KEY": key, "WANDB_MODE": "offline", "XDG_CACHE_HOME": str(root / "cache"),
           "WANDB_DIR": str(root / "wandb"), "WANDB_CONFIG_DIR": str(root / "wandb_config"),
           "WANDB_CACHE_DIR": str(root / "wandb_cache"), "WANDB_DATA_DIR": str(root / "wandb_data")}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args(root, "tracking.wandb=offline")],
                          cwd=root, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    # good odd files: every file bad_images wrote but the bad ones and missing.jpg (not on disk: not listed)
    return {"root": root, "bad": bad, "odd_good": len(files) - len(bad) - 1, "key": key, "done": done,
            "run": root / "runs" / "cars" / "smoke"}


@pytest.mark.slow
def test_bad_files_are_skipped_and_listed_and_the_run_finishes(user_run):
    bad, run, done = user_run["bad"], user_run["run"], user_run["done"]
    listed = dict(line.split("\t") for line in (run / "bad_files.txt").read_text().splitlines())
    assert set(listed) == set(bad)
    assert all(bad[path] in reason for path, reason in listed.items())
    total = 3 * 6 + len(bad) + user_run["odd_good"]
    assert f"images: {len(bad)} of {total} unreadable, skipped (listed in bad_files.txt)" in done.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["bad_files"] == len(bad) and metrics["data"]["images_checked"] == total
    assert metrics["train"]["epochs_run"] == 1 and 0.0 <= metrics["test_top1"] <= 1.0
    assert sum(metrics["data"][split] for split in ("train", "val", "test")) == total - len(bad)


@pytest.mark.slow
def test_the_wandb_api_key_never_appears_in_anything_a_run_writes(user_run):
    root, run, key, done = user_run["root"], user_run["run"], user_run["key"], user_run["done"]
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and (offline[0] / "logs" / "debug.log").is_file()  # W&B did run and log
    assert yaml.safe_load((run / "config.yaml").read_text())["tracking"]["wandb"] == "offline"
    assert (root / "saved" / "cars" / "smoke").is_dir()  # the export folder is searched too
    assert files_containing(root, key) == []
    for part in (key[:12], key[-12:]):  # no redaction that keeps a recognisable piece either
        assert files_containing(root, part) == []
    assert key not in done.stdout and key not in done.stderr


@pytest.mark.slow
def test_the_offline_wandb_run_carries_the_reports_figures(user_run):
    (offline,) = sorted((user_run["run"] / "wandb").glob("offline-run-*"))
    images = sorted((offline / "files" / "media" / "images" / "figures").glob("*.png"))
    # The stage's training curves and its confusion plot, as W&B stored them (name_<step>_<hash>.png).
    assert sorted(p.name.split("_")[0] for p in images) == ["confusion", "curves"]
    drawn = Image.open(user_run["run"] / "plots" / "curves_train.png")
    for path in images:
        with Image.open(path) as image:
            image.verify()
    curves = next(p for p in images if p.name.startswith("curves"))
    assert Image.open(curves).size == drawn.size


def test_strict_stops_at_the_first_bad_file_with_its_path(user_run, tmp_path):
    root, bad = user_run["root"], user_run["bad"]
    done, _ = run_cli(*args(root, "data.strict=true", f"runs_root={tmp_path}/runs",
                                     f"export.dir={tmp_path}/saved"), cwd=root)
    assert done.returncode == 2
    line, = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and any(f"{path}: {reason}" in line for path, reason in bad.items()), line
    assert not (tmp_path / "runs" / "cars" / "smoke" / "train").exists()  # nothing trained
