"""Runs every benchmark, each in its own process, and writes the record ``docs/BENCHMARKS.md``.

Every ``benchmarks/*.py`` not starting with ``_`` (this file excepted) runs in a subprocess of its
own, so that its peak memory is its own, one after the other, so that none shares the cores with
another. Each ends with a ``BENCHMARK_RESULT`` line (``_record.py``): ratios measured side by side
in that run, each with its goal. Absolute numbers drift on shared machines; the ratios are what we
track. The record lists the machine, then per benchmark its command, wall time, peak memory and a
case | ratio | goal | met table.

A benchmark that fails, times out or prints no result is a row saying so, and the exit status is
then 1; a goal that is not met is a measurement, not a failure (exit 0).

Peak memory is the largest resident set of the benchmark's process or of any process it started
and waited for (``os.wait4``'s rusage). This process imports no TensorFlow: a child started by
vfork/exec inherits its parent's peak-RSS mark, so a heavy parent would hide the children's peaks.

``--smoke`` passes ``--smoke`` to every benchmark (tiny sizes: the wiring, not the numbers) and, unless
``--out`` is given, writes ``$TMPDIR/keras_fgvc/BENCHMARKS.smoke.md`` so that the full record in
docs/ is never replaced by a smoke run. The default job (``make run``, goal <= 600 s on 2 cores) is
timed only in a full run with ``--default-job``; ``make test`` is never run from here: pass the time
you measured with ``--make-test-seconds``, else the record says "not measured in this run".

    python benchmarks/run_all.py                                  # full run by hand: docs/BENCHMARKS.md
    python benchmarks/run_all.py --default-job --make-test-seconds 412
    python benchmarks/run_all.py --only export engine             # some benchmarks, same record layout
    python benchmarks/run_all.py --smoke                          # what `make bench` and CI run
"""

import argparse
import datetime
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from _record import parse_result, result_row

# keras_fgvc.atomic imports no TensorFlow: this process must not (see the docstring)
from keras_fgvc.atomic import atomic_open

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_DIR = os.path.join(REPO, "benchmarks")
DEFAULT_OUT = os.path.join(REPO, "docs", "BENCHMARKS.md")
SMOKE_OUT = os.path.join(tempfile.gettempdir(), "keras_fgvc", "BENCHMARKS.smoke.md")
DEFAULT_JOB = ["run.py", "export.overwrite=true"]  # what `make run` runs after installing
DEFAULT_JOB_BUDGET_S = 600
TAIL_LINES = 15


def discover():
    """Benchmark names (file stems), sorted: every benchmarks/*.py but helpers (``_*``) and this file."""
    this = os.path.basename(__file__)
    return sorted(name[:-3] for name in os.listdir(BENCHMARKS_DIR)
                  if name.endswith(".py") and not name.startswith("_") and name != this)


# ----------------------------------------------------------------------------------------- running
def run_command(argv, timeout_s, log_path):
    """Run ``argv`` in its own session, output to ``log_path``; returns exit code (None when timed
    out), wall seconds, peak RSS in MB (the largest of the process and its waited-for children)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # Its own session: on a timeout the whole group it started (workers, run.py) is killed.
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout_s:
            os.killpg(process.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(process.pid, 0)
            timed_out = True
            break
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    wall_s = time.perf_counter() - start
    return (None if timed_out else process.returncode), wall_s, usage.ru_maxrss / 1024  # Linux: KiB


def tail(path, lines=TAIL_LINES):
    with open(path, errors="replace") as log:
        return "".join(log.readlines()[-lines:]).rstrip()


def run_benchmark(name, smoke, timeout_s, log_dir):
    """One benchmark's outcome: command, exit code, wall time, peak memory, parsed result, log tail."""
    script = os.path.join("benchmarks", f"{name}.py")
    flags = ["--smoke"] if smoke else []
    log_path = os.path.join(log_dir, f"{name}.log")
    code, wall_s, peak_mb = run_command([sys.executable, script, *flags], timeout_s, log_path)
    with open(log_path, errors="replace") as log:
        result = parse_result(log.read())
    return {"name": name, "command": " ".join(["python", script, *flags]), "exit_code": code,
            "timeout_s": timeout_s, "wall_s": wall_s, "peak_mb": peak_mb, "result": result,
            "log_tail": tail(log_path), "log": log_path}


def outcome_rows(run):
    """The benchmark's rows, or one row saying why there are none (never silently dropped)."""
    if run["exit_code"] is None:
        problem = f"timed out after {run['timeout_s']:.0f} s"
    elif run["exit_code"] != 0:
        problem = f"failed (exit {run['exit_code']})"
    elif run["result"] is None:
        problem = "printed no BENCHMARK_RESULT line"
    elif not run["result"].get("rows"):
        problem = "printed a BENCHMARK_RESULT without rows"
    else:
        return run["result"]["rows"]
    return [result_row(f"benchmark {problem}", None, "finishes", f"see {run['log']}", met=False)]


def succeeded(run):
    return run["exit_code"] == 0 and bool((run["result"] or {}).get("rows"))


def default_job_rows(args, log_dir):
    """`make run` timed when asked (full runs only); `make test` as given. Never an invented number."""
    if args.default_job:
        code, wall_s, peak_mb = run_command([sys.executable, *DEFAULT_JOB], args.default_job_timeout,
                                            os.path.join(log_dir, "default_job.log"))
        if code == 0:
            make_run = result_row(f"make run wall time / {DEFAULT_JOB_BUDGET_S} s", wall_s / DEFAULT_JOB_BUDGET_S,
                                  "<= 1.0x", f"{wall_s:.0f} s, peak memory {peak_mb:,.0f} MB, {os.cpu_count()} CPUs")
        else:
            reason = "timed out" if code is None else f"failed (exit {code})"
            make_run = result_row(f"make run wall time / {DEFAULT_JOB_BUDGET_S} s", None, "<= 1.0x",
                                  f"{reason}: see {os.path.join(log_dir, 'default_job.log')}", met=False)
    else:
        make_run = result_row(f"make run wall time / {DEFAULT_JOB_BUDGET_S} s", None, "<= 1.0x",
                              "not measured in this run (full run with --default-job)")
    if args.make_test_seconds is not None:
        make_test = result_row("make test wall time", args.make_test_seconds, "",
                               "measured outside this run, given by --make-test-seconds", unit=" s")
    else:
        make_test = result_row("make test wall time", None, "", "not measured in this run", unit=" s")
    return [make_run, make_test]


# ----------------------------------------------------------------------------------------- machine
def _version(*distributions):
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_line():
    """What the suite measures on a GPU: the names nvidia-smi lists, or "not measured: no GPU"."""
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False, timeout=30)
        names = [line.split(" (UUID")[0] for line in listed.stdout.splitlines() if line.startswith("GPU")]
        if listed.returncode == 0 and names:
            return (f"{'; '.join(names)}: backbones.py times its pairs on it in float32 and with mixed_float16 + "
                    "XLA; the other benchmarks run where TensorFlow places them")
    return "not measured: no GPU (backbones.py's mixed_float16 + XLA rows say so)"


def code_version():
    """The commit the benchmarks ran on (with " + uncommitted changes" when the tree differs)."""
    def git(*args):
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("log", "-1", "--format=%h %ad", "--date=short")
    if not commit:
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine():
    return {
        "code": code_version(),
        "CPU": f"{os.cpu_count()} cores, {cpu_model()}",
        "GPU": gpu_line(),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "TensorFlow / Keras / NumPy": " / ".join(
            (_version("tensorflow", "tensorflow-cpu", "tf-nightly"), _version("keras"), _version("numpy"))),
    }


# ------------------------------------------------------------------------------------------ record
def format_ratio(row):
    ratio, unit = row["ratio"], row.get("unit", "x")
    if ratio is None:
        return "not measured"
    if unit == "x":  # a third decimal where it decides the mark ("within 1%") or the value is small
        return f"{ratio:.3f}x" if (row["goal"] or "").startswith("within") or abs(ratio) < 0.1 else f"{ratio:.2f}x"
    if unit == "":
        return f"{ratio:.3f}"
    return f"{ratio:,.1f}{unit}"


def format_met(row):
    if row["met"] is None:
        return "-"
    return "met" if row["met"] else "**not met**"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def rows_table(rows):
    lines = ["| case | ratio | goal | met | detail |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(r['case'])} | {format_ratio(r)} | {_cell(r['goal'] or '-')} | {format_met(r)} | "
              f"{_cell(r['detail'])} |" for r in rows]
    return lines


def status(run):
    return "ok" if succeeded(run) else outcome_rows(run)[0]["case"].removeprefix("benchmark ")


def render_record(runs, machine_info, default_job, smoke, date):
    """The record as markdown: header, machine, summary, one section per benchmark, the default job."""
    kind = ("smoke run (tiny sizes: checks the wiring; the numbers mean nothing)" if smoke else "full run")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `python benchmarks/run_all.py{' --smoke' if smoke else ''}` on {date}: {kind}. Every",
        "benchmark ran alone, in its own process; each ratio was measured side by side within that run (absolute",
        "numbers drift on shared machines; ratios are what we track). Peak memory: the largest resident set of the",
        "benchmark's process or of a process it started.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {_cell(value)} |" for key, value in machine_info.items()],
        "",
        "## Summary",
        "",
        "| benchmark | status | wall s | peak memory MB | goals met | goals not met |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        rows = outcome_rows(run)
        met = sum(r["met"] is True for r in rows)
        missed = sum(r["met"] is False for r in rows)
        lines.append(f"| [{run['name']}](#{run['name']}) | {status(run)} | {run['wall_s']:.1f} | "
                     f"{run['peak_mb']:,.0f} | {met} | {missed} |")
    for run in runs:
        note = (run["result"] or {}).get("note")
        summary = f"`{run['command']}`: {status(run)}, {run['wall_s']:.1f} s, peak memory {run['peak_mb']:,.0f} MB"
        lines += ["", f"## {run['name']}", "", summary + (f"; {note}" if note else ""), ""]
        lines += rows_table(outcome_rows(run))
        if not succeeded(run):
            lines += ["", "Last lines of its output:", "", "```", run["log_tail"], "```"]
    job = f"`make run` (= `python {' '.join(DEFAULT_JOB)}` after install), goal <= {DEFAULT_JOB_BUDGET_S} s on 2 cores"
    lines += ["", "## default job", "", f"{job}; `make test`.", ""]
    lines += rows_table(default_job)
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to every benchmark (CI, `make bench`)")
    parser.add_argument("--out", default=None, help=f"record path (default: {DEFAULT_OUT}; smoke: {SMOKE_OUT})")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these benchmarks only (file stems)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per benchmark before it is killed (default: 300 smoke, 7200 full)")
    parser.add_argument("--logs", default=None, help="folder for each benchmark's output (default: a new temp folder)")
    parser.add_argument("--default-job", action="store_true",
                        help=f"full runs: also time `python {' '.join(DEFAULT_JOB)}` (the demo `make run` runs)")
    parser.add_argument("--default-job-timeout", type=float, default=3600)
    parser.add_argument("--make-test-seconds", type=float, default=None,
                        help="`make test` wall time you measured, recorded as given")
    args = parser.parse_args(argv)
    known = discover()
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {known}")
    if args.smoke and args.default_job:
        parser.error("--default-job times the full demo: use it in a full run, not with --smoke")
    args.names = [name for name in known if not args.only or name in args.only]
    args.out = args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT)
    args.timeout = args.timeout or (300 if args.smoke else 7200)
    return args


def main(argv=None):
    args = parse_args(argv)
    log_dir = args.logs or tempfile.mkdtemp(prefix="keras_fgvc-benchmarks-")
    os.makedirs(log_dir, exist_ok=True)
    print(f"{len(args.names)} benchmarks{' (smoke)' if args.smoke else ''}; output of each in {log_dir}", flush=True)
    runs = []
    for index, name in enumerate(args.names, 1):
        run = run_benchmark(name, args.smoke, args.timeout, log_dir)
        runs.append(run)
        print(f"[{index}/{len(args.names)}] {name}: {status(run)}, {run['wall_s']:.1f} s, "
              f"peak {run['peak_mb']:,.0f} MB, {len(outcome_rows(run))} rows", flush=True)
    default_job = default_job_rows(args, log_dir)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    with atomic_open(args.out) as record:  # the old record or the new one, never half
        record.write(render_record(runs, machine(), default_job, args.smoke, date))
    print(f"record: {args.out}")
    failed = [run["name"] for run in runs if not succeeded(run)]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
