"""A bad CSV table through ``run.py``: one ``error:`` line naming the file, row or column, exit
code 2, and nothing written (no run folder, no export, no cache entry for the run)."""

import pytest
from PIL import Image

from tests.pipelines.cli import run_cli


@pytest.mark.parametrize("text, message", [
    ("path\nimg/a.png\n", "train.csv: missing column(s) label; found path"),
    ("path,label\nimg/a.png,0\nimg/b.png,1\nimg/a.png,1\n", "train.csv: row 4: duplicate path '{root}/img/a.png' (first at row 2)"),
])
def test_a_bad_table_is_one_line_and_nothing_is_written(tmp_path, text, message):
    (tmp_path / "data" / "img").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / "img" / name)
    (tmp_path / "data" / "train.csv").write_text(text)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    done, _ = run_cli("pipeline=cars", "smoke=true", "data.format=csv", f"data.root={tmp_path}/data",
                      f"runs_root={tmp_path}/runs", f"export.dir={tmp_path}/saved", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path}/data/" + message.format(root=f"{tmp_path}/data")]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
