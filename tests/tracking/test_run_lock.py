"""One process at a time in a run folder: a second refuses with one line, and the lock dies with
its holder (SIGKILL included), so a killed run can be resumed at once."""

import os
import signal
import subprocess
import sys

import pytest

from keras_fgvc.errors import UserError
from keras_fgvc.tracking.run_dir import run_lock

HOLD = """
import sys, time
from keras_fgvc.tracking.run_dir import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_refuses_naming_the_folder_and_the_pid(tmp_path):
    folder = str(tmp_path / "runs" / "fivek" / "default")
    with run_lock(folder):
        with pytest.raises(UserError) as refused:
            with run_lock(folder):
                pass
        assert str(refused.value) == (f"run folder {folder} is in use by another process (pid {os.getpid()}); "
                                      "wait for it to finish, or start this run under another name=")
        with run_lock(str(tmp_path / "runs" / "fivek" / "other")):  # another folder is free
            pass
    with run_lock(folder):  # released on exit
        pass
    assert not (tmp_path / "runs").exists()  # the lock lives outside the run folder


def test_the_lock_of_a_killed_process_is_released(tmp_path):
    folder = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, folder], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            with run_lock(folder):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(folder):  # nothing stale left behind
        pass


def test_each_worker_of_a_multi_worker_job_holds_its_own_lock(tmp_path, monkeypatch):
    folder = str(tmp_path / "run")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}, "task": {"type": "worker", "index": 0}}')
    with run_lock(folder):
        monkeypatch.setenv("TF_CONFIG", '{"cluster": {}, "task": {"type": "worker", "index": 1}}')
        with run_lock(folder):
            pass
