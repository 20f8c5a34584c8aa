"""What every pipeline's smoke test asserts about its run report (``tracking/report.py``): the HTML
parsed independently (sections in order, every image a decodable PNG, the numbers equal to
metrics.json), the Markdown twin's sections and image links; and about ``task=compare``'s page
(``compare.html`` equal to compare.csv)."""

import base64
import io
import json
import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

SECTIONS = ["Command", "Metrics", "Training curves", "Figures", "Model", "Bad files", "Run", "Config"]


class Page(HTMLParser):
    """Headings, images and the tables (rows of cell texts) of a page, in document order."""

    def __init__(self):
        super().__init__()
        self.headings, self.images, self.tables, self._tag, self._text = [], [], [], None, ""

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3", "td", "th"):
            self._tag, self._text = tag, ""
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])

    def handle_data(self, data):
        if self._tag:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self.headings.append((tag, self._text.strip()))
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._text.strip())
        if tag == self._tag:
            self._tag = None


def _close(cell: str, value) -> bool:
    """A table cell shows ``value``: integers exactly (thousands separators), floats to 4 decimals."""
    number = float(cell.replace(",", ""))
    return number == value if isinstance(value, int) else abs(number - value) <= 5e-5 + 1e-4 * abs(value) * (abs(value) >= 1000)


def _offline(text: str) -> bool:
    return "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text


def check_compare_page(out_dir) -> Page:
    """Assert ``out_dir/compare.html`` opens offline, shows compare.csv cell for cell (numbers to
    the shown precision, blanks as "-") and inlines compare_curves.png byte for byte."""
    page = Page()
    with open(os.path.join(out_dir, "compare.html")) as f:
        text = f.read()
    page.feed(text)
    assert _offline(text)
    expected = pd.read_csv(os.path.join(out_dir, "compare.csv"))
    [shown] = page.tables
    assert shown[0] == list(expected.columns)
    assert len(shown) - 1 == len(expected) > 0
    for row, (_, values) in zip(shown[1:], expected.iterrows()):
        for column, cell, value in zip(expected.columns, row, values):
            if pd.isna(value):
                assert cell == "-", (column, cell)
            elif isinstance(value, (bool, np.bool_)):
                assert cell == str(bool(value)), (column, cell, value)
            elif isinstance(value, (int, float, np.integer, np.floating)):
                assert _close(cell, value.item() if hasattr(value, "item") else value), (column, cell, value)
            else:
                assert cell == str(value), (column, cell, value)
    [source] = page.images
    assert source.startswith("data:image/png;base64,")
    data = base64.b64decode(source.split(",", 1)[1])
    with open(os.path.join(out_dir, "compare_curves.png"), "rb") as f:
        assert data == f.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.width > 100 and image.height > 100
    return page


def check_model_cards(run_dir, page: Page, stages: list) -> dict:
    """Assert the model table shows, for every stage, the MACs and images/s of its
    ``<stage>/model_card.json`` (a measured card); returns ``{stage: {column: cell}}``."""
    table = next(table for table in page.tables if table[0][:2] == ["stage", "params"])
    rows = {row[0]: dict(zip(table[0], row)) for row in table[1:]}
    assert list(rows) == stages
    for stage, row in rows.items():
        with open(os.path.join(run_dir, stage, "model_card.json")) as f:
            card = json.load(f)["card"]
        assert row["MACs"] == f"{card['macs']:,}" and card["macs"] > 0, (stage, row)
        speed = card["images_per_second"]["1"]
        assert speed > 0 and float(row["images/s @1"].replace(",", "")) == pytest.approx(speed, abs=0.05), (stage, row)
        assert row["input"] == "x".join(map(str, card["input_shape"]))
    return rows


def check_report(run_dir, stages: list, command_has: str = "python run.py", cards: bool = True) -> Page:
    """Assert the report of ``run_dir`` shows ``stages`` and matches its metrics.json (and, with
    ``cards``, every stage's measured model card); returns the page."""
    run_dir = str(run_dir)
    page = Page()
    with open(os.path.join(run_dir, "report.html")) as f:
        text = f.read()
    page.feed(text)
    assert [h for tag, h in page.headings if tag == "h2"] == SECTIONS
    assert _offline(text)
    assert len(page.images) >= len(stages)  # a training curve per stage, and the run's figures
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    per_stage = next(table for table in page.tables if table[0][0] == "stage" and table[0][1] != "params")
    header, rows = per_stage[0], {row[0]: row for row in per_stage[1:]}
    assert list(rows) == stages
    for stage in stages:
        stage_metrics = metrics.get(stage)
        if stage_metrics is None:
            with open(os.path.join(run_dir, stage, "metrics.json")) as f:
                stage_metrics = json.load(f)
        shown = 0
        for column, cell in zip(header[1:], rows[stage][1:]):
            value = stage_metrics
            for part in column.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert _close(cell, value), (stage, column, cell, value)
                shown += 1
        assert shown >= 1, (stage, header)
    with open(os.path.join(run_dir, "report.md")) as f:
        markdown = f.read()
    assert re.findall(r"^## (.+)$", markdown, re.MULTILINE) == SECTIONS
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert os.path.isfile(os.path.join(run_dir, link)), link
    assert command_has in markdown
    if cards:
        check_model_cards(run_dir, page, stages)
    return page
