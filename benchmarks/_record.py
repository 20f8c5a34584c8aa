"""Machine-readable benchmark results, read by ``run_all.py`` (not a benchmark itself: the leading
underscore keeps it out of the suite).

Every benchmark keeps printing its human table and ends with one line

    BENCHMARK_RESULT {"benchmark": "augment", "rows": [{"case": ..., "ratio": 25.1, "unit": "x",
                      "goal": ">= 20x", "met": true, "detail": "..."}], "note": "..."}

A row is one measured ratio (or, for accuracy benchmarks, one measured value) with its goal. Goals
are small strings so that the record reads like the issue that set them:

    ">= 0.5x", "<= 1.1x"   the ratio against a bound
    ">= 0.85"              a value (e.g. an accuracy) against a bound
    "within 5%"            the ratio ours / reference in [0.95, 1.05]
    ""                     no goal: the row is context (its mark is "-")

    from _record import emit, result_row
    emit("augment", [result_row("RandAugment: ours / keras", 25.1, ">= 20x", "812 vs 32 images/s")])
"""

import json
import math
import re

MARKER = "BENCHMARK_RESULT "
_BOUND = re.compile(r"^(>=|<=)\s*([0-9.]+)\s*(x|s)?$")
_WITHIN = re.compile(r"^within\s+([0-9.]+)\s*%$")


def goal_met(value, goal):
    """Whether ``value`` meets ``goal`` (see the module docstring); None when there is no goal or no value.

    Example:
        >>> goal_met(0.6, ">= 0.5x"), goal_met(1.07, "within 5%"), goal_met(2.0, "")
        (True, False, None)
    """
    goal = (goal or "").strip()
    if not goal or value is None:
        return None
    bound = _BOUND.match(goal)
    if bound:
        limit = float(bound.group(2))
        return value >= limit if bound.group(1) == ">=" else value <= limit
    within = _WITHIN.match(goal)
    if within:
        return abs(value - 1.0) <= float(within.group(1)) / 100 + 1e-12  # 0.95 is within 5% despite float error
    raise ValueError(f"goal {goal!r}: use '>= 0.5x', '<= 1.1x', '>= 0.85' or 'within 5%'")


def result_row(case, ratio, goal="", detail="", unit="x", met=None):
    """One row: ``case`` measured ``ratio`` (in ``unit``: "x" for ratios, "" for plain values, "s");
    ``met`` is derived from ``goal`` unless given (for a goal that one number cannot express).
    A ratio that is not a finite number (a side measured nothing) is recorded as None, never NaN."""
    if ratio is not None:
        ratio = float(ratio)
        if not math.isfinite(ratio):
            ratio = None
    if met is None:
        met = goal_met(ratio, goal)
    return {"case": case, "ratio": ratio, "unit": unit, "goal": goal, "met": None if met is None else bool(met),
            "detail": detail}


def emit(benchmark, rows, note=""):
    """Print the machine-readable line (last, so a reader takes the final one)."""
    print(MARKER + json.dumps({"benchmark": benchmark, "rows": list(rows), "note": note}), flush=True)


def parse_result(stdout):
    """The payload of the last ``BENCHMARK_RESULT`` line of ``stdout``, or None when there is none
    (or it is not valid JSON: a benchmark killed while printing it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                return json.loads(line[len(MARKER):])
            except json.JSONDecodeError:
                return None
    return None
