"""``run.py`` in a subprocess, as a user runs it: the pipeline tests' one way to call the CLI."""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, cwd, env=None):
    """``(CompletedProcess, seconds)`` of ``python run.py *args`` in ``cwd`` (``env``: extra variables)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=cwd, capture_output=True,
                          text=True, check=False, env={**os.environ, **(env or {})})
    return done, time.perf_counter() - started
