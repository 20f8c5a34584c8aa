"""A user's image folder with every kind of bad file, through ``run.py`` as the user runs it: the
bad ones are skipped and listed by path and reason, the odd-but-valid ones (PNG named .jpg, CMYK,
greyscale, 16-bit, RGBA, EXIF-rotated, 10,000 x 10,000) train, and the run finishes;
``data.strict=true`` stops at the first bad file with its path, before anything trains."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import bad_images
from tests.pipelines.cli import run_cli

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 class folders of 6 clean images, and every bad_images file in the first class."""
    root = tmp_path_factory.mktemp("bad_folder")
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        (root / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(70 * index + rng.integers(0, 50, (24, 24, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / "data" / name / f"{i}.png")
    files = bad_images.write(str(root / "data" / CLASSES[0]))
    bad = {path: reason for path, reason in files.values() if isinstance(reason, str) and os.path.exists(path)}
    return root, bad, len(files) - len(bad) - 1  # the good odd ones (missing.jpg does not exist: not listed)


def args(root, *extra):
    return ["pipeline=cars", "smoke=true", "data.format=imagefolder", f"data.root={root}/data",
            "data.val_fraction=0.2", "data.test_fraction=0.2", f"data.cache_dir={root}/cache",
            f"runs_root={root}/runs", f"export.dir={root}/saved", "export.enabled=false", *extra]


@pytest.mark.slow
def test_bad_files_are_skipped_and_listed_and_the_run_finishes(folder):
    root, bad, odd_good = folder
    done, _ = run_cli(*args(root), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    run = root / "runs" / "cars" / "smoke"
    listed = dict(line.split("\t") for line in (run / "bad_files.txt").read_text().splitlines())
    assert set(listed) == set(bad)
    assert all(bad[path] in reason for path, reason in listed.items())
    total = 3 * 6 + len(bad) + odd_good
    assert f"images: {len(bad)} of {total} unreadable, skipped (listed in bad_files.txt)" in done.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["bad_files"] == len(bad) and metrics["data"]["images_checked"] == total
    assert metrics["train"]["epochs_run"] == 1 and 0.0 <= metrics["test_top1"] <= 1.0
    assert sum(metrics["data"][split] for split in ("train", "val", "test")) == total - len(bad)


def test_strict_stops_at_the_first_bad_file_with_its_path(folder, tmp_path):
    root, bad, _ = folder
    done, _ = run_cli(*args(root, "data.strict=true", f"runs_root={tmp_path}/runs"), cwd=root)
    assert done.returncode == 2
    line, = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and any(f"{path}: {reason}" in line for path, reason in bad.items()), line
    assert not (tmp_path / "runs" / "cars" / "smoke" / "train").exists()  # nothing trained
