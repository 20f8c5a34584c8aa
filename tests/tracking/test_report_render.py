"""The run report as a browser draws it: headless Chromium renders report.html from a hand-made
run folder to a PNG, which must have the asked size and show the page (text, tables and the
inline training-curves plot), not a blank or an error page."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from keras_fgvc.tracking.report import write_report

WIDTH, HEIGHT = 1000, 1400
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# matplotlib's first line colour (C0): the training-curves plot is drawn by the page's inline PNG.
CURVE_BLUE = np.array([31, 119, 180])


def browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip(f"no Chromium binary on PATH (looked for {', '.join(BROWSERS)}; Debian: apt-get install chromium)")
    return found


def render(html_path, png_path, profile):
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={png_path}",
               html_path.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and png_path.is_file(), done.stderr[-2000:]


@pytest.fixture
def report(tmp_path):
    run = tmp_path / "runs" / "cars" / "shown"
    (run / "train").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"pipeline": "cars", "name": "shown",
                                                     "train": {"stages": [{"name": "train"}]}}))
    epochs = range(6)
    pd.DataFrame({"epoch": epochs, "loss": [1.6 - 0.2 * e for e in epochs], "val_loss": [1.7 - 0.15 * e for e in epochs],
                  "accuracy": [0.3 + 0.1 * e for e in epochs], "val_accuracy": [0.25 + 0.08 * e for e in epochs]}
                 ).to_csv(run / "train" / "history.csv", index=False)
    (run / "metrics.json").write_text(json.dumps({"train": {"val": {"top1": 0.65}, "epochs_run": 6}, "test_top1": 0.61}))
    html_path, _ = write_report(str(run), "python run.py pipeline=cars name=shown", 42.0)
    return tmp_path, Path(html_path)


def test_chromium_draws_the_report(report):
    tmp_path, html_path = report
    png_path = tmp_path / "report.png"
    render(html_path, png_path, tmp_path / "profile")
    image = Image.open(png_path).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    pixels = np.asarray(image).astype(int)
    ink = (pixels.min(axis=-1) < 200).mean()  # text, table borders and plot: not the white page
    assert 0.005 < ink < 0.5, ink
    assert pixels.std() > 20
    curve = (np.abs(pixels - CURVE_BLUE).max(axis=-1) < 40).sum()
    assert curve > 200, curve  # the base64 PNG decoded and drawn in the page
