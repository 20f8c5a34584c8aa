"""Every benchmark runs in --smoke mode (as CI requires) and prints its side-by-side ratio table.

The ratios themselves are not asserted: timings on a shared CPU are noise at smoke sizes.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = sorted(name for name in os.listdir(os.path.join(REPO, "benchmarks")) if name.endswith(".py") and not name.startswith("_"))


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_prints_ratios(name):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", name), "--smoke"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # A ratio cell such as "1.22x", or a "ratio ..." row of numbers, in the printed table.
    assert re.search(r"\d+\.\d+x|ratio\b.*\d+\.\d+", result.stdout), result.stdout[-2000:]


def test_every_benchmark_has_a_smoke_mode():
    assert BENCHMARKS
    for name in BENCHMARKS:
        assert "--smoke" in open(os.path.join(REPO, "benchmarks", name)).read(), name
