"""The benchmark suite: ``run_all.py --smoke`` runs every benchmark (as CI and `make bench` do) and
records parsed rows for each; its pieces (goal marks, the result line, the markdown record, the child
process accounting, ours-vs-paper rows) are checked on hand-computable inputs.

Smoke ratios themselves are not asserted: timings on a shared CPU are noise at smoke sizes.
"""

import argparse
import ast
import importlib.util
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_fgvc.evaluation.metrics import accuracy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(REPO, "benchmarks")
BENCHMARKS = sorted(name for name in os.listdir(BENCH_DIR) if name.endswith(".py") and not name.startswith("_"))
SUITE = [name[:-3] for name in BENCHMARKS if name != "run_all.py"]
# The scripts import their helpers (_record) by plain name, as when run from benchmarks/. Appended,
# not prepended, so that benchmarks/export.py & co. never shadow an installed module.
if BENCH_DIR not in sys.path:
    sys.path.append(BENCH_DIR)


def load(name):
    """A benchmark script as a module under a private name (``benchmarks_<name>``)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", os.path.join(BENCH_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


record = load("_record")
run_all = load("run_all")


def test_every_benchmark_has_a_smoke_mode():
    assert BENCHMARKS
    for name in BENCHMARKS:
        with open(os.path.join(BENCH_DIR, name)) as script:
            assert "--smoke" in script.read(), name


def test_suite_is_every_benchmark_but_helpers_and_itself():
    assert run_all.discover() == SUITE
    assert {"export", "backbones", "engine"} <= set(SUITE) and "run_all" not in SUITE


# ------------------------------------------------------------------------------------- goal marks
@pytest.mark.parametrize("value,goal,met", [
    (0.5, ">= 0.5x", True), (0.49, ">= 0.5x", False), (1.1, "<= 1.1x", True), (1.11, "<= 1.1x", False),
    (0.86, ">= 0.85", True), (0.95, "within 5%", True), (1.051, "within 5%", False), (590, "<= 600 s", True),
    (3.0, "", None), (None, ">= 1.0x", None),
])
def test_goal_marks(value, goal, met):
    assert record.goal_met(value, goal) is met


def test_unknown_goal_is_an_error():
    with pytest.raises(ValueError, match="goal"):
        record.goal_met(1.0, "about 1")


def test_result_line_round_trips_and_the_last_one_wins(capsys):
    print("a human table | 1.00x")
    record.emit("first", [record.result_row("old", 1.0)])
    rows = [record.result_row("ours / peer", 25.1, ">= 20x", "812 vs 32 images/s"),
            record.result_row("nothing measured", float("nan"), "<= 1.1x"),
            record.result_row("accuracy", 0.8, ">= 0.85", unit=""),
            record.result_row("two-part goal", 0.9, "<= 1.0x", met=False)]
    record.emit("augment", rows, note="smoke")
    payload = record.parse_result(capsys.readouterr().out + "trailing noise\n")
    assert payload["benchmark"] == "augment" and payload["note"] == "smoke"
    assert [(r["ratio"], r["met"]) for r in payload["rows"]] == [(25.1, True), (None, None), (0.8, False), (0.9, False)]
    assert payload["rows"][0] == {"case": "ours / peer", "ratio": 25.1, "unit": "x", "goal": ">= 20x", "met": True,
                                  "detail": "812 vs 32 images/s"}


def test_missing_or_truncated_result_line_parses_as_none():
    assert record.parse_result("no marker here\n") is None
    assert record.parse_result(record.MARKER + '{"benchmark": "x", "rows": [\n') is None


# ---------------------------------------------------------------------------------------- record
def fake_run(name, exit_code=0, rows=None, note=""):
    result = None if rows is None else {"benchmark": name, "rows": rows, "note": note}
    return {"name": name, "command": f"python benchmarks/{name}.py --smoke", "exit_code": exit_code,
            "timeout_s": 300, "wall_s": 12.34, "peak_mb": 1536.4, "result": result,
            "log_tail": "Traceback ...\nValueError: boom", "log": f"/logs/{name}.log"}


def test_record_has_machine_summary_sections_and_failure_rows():
    runs = [
        fake_run("augment", rows=[record.result_row("ours / keras", 25.1, ">= 20x", "812 vs 32 | images/s"),
                                  record.result_row("extra memory", 153.24, "<= 1024", unit=" MB"),
                                  record.result_row("context", 0.0638)], note="smoke"),
        fake_run("engine", exit_code=1, rows=None),
        fake_run("export", exit_code=None, rows=None),
        fake_run("retrieval", exit_code=0, rows=None),
        fake_run("input_pipeline", exit_code=0, rows=[]),
    ]
    args = argparse.Namespace(default_job=False, make_test_seconds=None)
    text = run_all.render_record(runs, {"CPU": "2 cores, Test CPU", "GPU": "not measured: no GPU"},
                                 run_all.default_job_rows(args, "/logs"), smoke=True, date="2026-01-02 03:04 UTC")
    lines = text.splitlines()
    assert "Written by `python benchmarks/run_all.py --smoke` on 2026-01-02 03:04 UTC: smoke run" in lines[2]
    assert "| GPU | not measured: no GPU |" in lines
    assert "| [augment](#augment) | ok | 12.3 | 1,536 | 2 | 0 |" in lines
    assert "| [engine](#engine) | failed (exit 1) | 12.3 | 1,536 | 0 | 1 |" in lines
    assert "`python benchmarks/augment.py --smoke`: ok, 12.3 s, peak memory 1,536 MB; smoke" in lines
    assert r"| ours / keras | 25.10x | >= 20x | met | 812 vs 32 \| images/s |" in lines
    assert "| extra memory | 153.2 MB | <= 1024 | met |  |" in lines
    assert "| context | 0.064x | - | - |  |" in lines
    assert "| benchmark failed (exit 1) | not measured | finishes | **not met** | see /logs/engine.log |" in lines
    assert "| benchmark timed out after 300 s | not measured | finishes | **not met** | see /logs/export.log |" in lines
    assert "| benchmark printed no BENCHMARK_RESULT line | not measured | finishes | **not met** | see /logs/retrieval.log |" in lines
    assert "| benchmark printed a BENCHMARK_RESULT without rows | not measured | finishes | **not met** |" in text
    assert text.count("ValueError: boom") == 4  # the log tail of each of the four without rows
    assert "| make run wall time / 600 s | not measured | <= 1.0x | - | not measured in this run" in text
    assert "| make test wall time | not measured | - | - | not measured in this run |" in lines


def test_make_test_time_is_recorded_as_given():
    rows = run_all.default_job_rows(argparse.Namespace(default_job=False, make_test_seconds=412.0), "/logs")
    assert run_all.format_ratio(rows[1]) == "412.0 s" and rows[1]["met"] is None
    assert run_all.format_ratio(record.result_row("params / paper", 0.99664, "within 1%")) == "0.997x"


def test_smoke_runs_never_write_the_docs_record():
    assert run_all.parse_args(["--smoke"]).out == run_all.SMOKE_OUT != run_all.DEFAULT_OUT
    assert run_all.parse_args([]).out == run_all.DEFAULT_OUT
    assert run_all.parse_args(["--smoke", "--out", "x.md", "--only", "export"]).names == ["export"]
    with pytest.raises(SystemExit):
        run_all.parse_args(["--smoke", "--default-job"])
    with pytest.raises(SystemExit):
        run_all.parse_args(["--only", "no_such_benchmark"])


def run_command_from_a_light_parent(child_code, timeout_s, log_path):
    """``run_all.run_command`` called from a fresh interpreter, as run_all.py runs: a child inherits
    its parent's peak-RSS mark at exec, and this pytest process holds TensorFlow (> 1 GB)."""
    call = f"import run_all, sys; print(run_all.run_command([sys.executable, '-c', {child_code!r}], {timeout_s}, {str(log_path)!r}))"
    done = subprocess.run([sys.executable, "-c", call], capture_output=True, text=True, cwd=BENCH_DIR, check=True)
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])  # the (code, wall_s, peak_mb) it printed


def test_child_exit_code_wall_time_and_peak_memory(tmp_path):
    # 200 MB written (touched, unlike a calloc'd bytearray), then exit 3: the peak and the code are the child's.
    code, wall_s, peak_mb = run_command_from_a_light_parent(
        "import sys; b = b'x' * (200 << 20); sys.exit(3)", 60, tmp_path / "a.log")
    assert code == 3 and 200 <= peak_mb < 400 and wall_s < 60
    code, wall_s, _ = run_command_from_a_light_parent("import time; time.sleep(60)", 1, tmp_path / "b.log")
    assert code is None and 1 <= wall_s < 30


# -------------------------------------------------------------------------------- ours vs papers
def test_paper_rows_count_params_and_macs_of_a_hand_computable_model():
    backbones = load("backbones")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(8, 3, padding="same")(inputs))
    params, macs = 3 * 3 * 3 * 8 + 8, 8 * 8 * 8 * 3 * 3 * 3  # kernel + bias; 8x8 outputs x 8 filters x 3x3x3
    rows = backbones.paper_rows("tiny", model, (8, 8, 3), params, macs, "within 1%", "within 5%", "hand count")
    assert [(r["ratio"], r["met"]) for r in rows] == [(1.0, True), (1.0, True)]
    assert rows[1]["detail"] == "0.0M vs 0.0M (hand count)" and rows[1]["case"] == "tiny MACs at 8x8 / published"
    rows = backbones.paper_rows("tiny", model, (8, 8, 3), params, 0.9 * macs, "within 1%", "within 5%", "hand count")
    assert rows[1]["ratio"] == pytest.approx(1 / 0.9) and rows[1]["met"] is False


# ------------------------------------------------------------- fivek_real's large evaluation set
fivek_eval = load("_fivek_eval")


def test_eval_set_takes_the_benchmark_class_mix_from_the_test_split():
    classes = np.repeat(np.arange(10), 1000)
    weights = np.array([0.08 if c in (2, 4) else 0.84 / 8 for c in range(10)])  # fivek_real.CLASS_WEIGHTS
    positions = fivek_eval.class_mix_positions(classes, weights, np.random.default_rng(0))
    # The 0.105 classes are taken whole (1000 each), Pullover and Coat scaled to 1000 * 0.08 / 0.105.
    assert np.bincount(classes[positions]).tolist() == [1000, 1000, 762, 1000, 762, 1000, 1000, 1000, 1000, 1000]
    assert len(np.unique(positions)) == len(positions)


def test_paired_interval_matches_the_normal_approximation_and_gives_the_verdict():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 4000)
    ours = np.where(rng.random(4000) < 0.92, truth, 1 - truth)
    theirs = np.where(rng.random(4000) < 0.88, truth, 1 - truth)
    a, b, difference, (low, high) = fivek_eval.paired_difference(accuracy, truth, ours, theirs)
    per_row = (ours == truth).astype(float) - (theirs == truth)
    assert (a, b, difference) == pytest.approx((np.mean(ours == truth), np.mean(theirs == truth), per_row.mean()))
    half_width = 1.96 * per_row.std() / np.sqrt(len(per_row))  # the paired normal interval
    assert low == pytest.approx(difference - half_width, abs=0.003)
    assert high == pytest.approx(difference + half_width, abs=0.003)
    assert fivek_eval.verdict((low, high)) == "beats" and fivek_eval.verdict((-high, -low)) == "trails"
    assert fivek_eval.verdict((-0.01, 0.02)) == "level"
    assert fivek_eval.paired_difference(accuracy, truth, ours, ours)[3] == (0.0, 0.0)


def test_pipeline_5k_uses_each_predictor_at_its_validation_threshold(tmp_path):
    decision = {"submission_predictor": "product", "product": {"threshold": 0.3}, "trained": {"threshold": 0.6}}
    (tmp_path / "metrics.json").write_text(json.dumps({"fivek": {"decision": decision}}))
    scores = {"mask": np.array([0.9, 0.5, 0.6, 1.0]), "distancing": np.array([0.5, 0.5, 0.4, 0.2]),
              "fivek": np.array([0.7, 0.2, 0.6, 0.59])}
    decided = fivek_eval.pipeline_5k(str(tmp_path), scores)
    assert decided["submitted"].tolist() == [1, 0, 0, 0]  # products 0.45, 0.25, 0.24, 0.2 at 0.3
    assert decided["5k model"].tolist() == [1, 0, 1, 0]


# ------------------------------------------------------------------------------ the smoke suite
@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory):
    """One ``run_all.py --smoke`` for the whole module: (its completed process, the record's text)."""
    folder = tmp_path_factory.mktemp("benchmarks")
    out = folder / "BENCHMARKS.smoke.md"
    done = subprocess.run(
        [sys.executable, os.path.join(BENCH_DIR, "run_all.py"), "--smoke", "--out", str(out), "--logs", str(folder)],
        capture_output=True, text=True, timeout=1800, cwd=REPO, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO},
    )
    return done, out.read_text() if out.exists() else ""


def table_rows(section):
    """(case, ratio, goal, met) of each row of a section's case table (cells may hold escaped pipes)."""
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0] not in ("case", "---"):
            rows.append(tuple(cells[:4]))
    return rows


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_smoke_suite_exits_zero(smoke_record):
    done, text = smoke_record
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| GPU |" in text and "## default job" in text


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", SUITE)
def test_smoke_suite_records_a_measured_goal_row(smoke_record, name):
    _, text = smoke_record
    assert f"\n## {name}\n" in text, text[-3000:]
    section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    measured = [row for row in table_rows(section)
                if re.fullmatch(r"[0-9.,]+(x| MB| s)?", row[1]) and row[2] != "-" and row[3] in ("met", "**not met**")]
    assert measured, section
