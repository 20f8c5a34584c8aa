"""A full disk, a file-size limit or a read-only output folder mid-run: one `error:` line naming
the file or folder, exit code 2, and no partial or temporary file left behind (every writer goes
through a temp file and a rename).

A full disk is simulated with RLIMIT_FSIZE (``ulimit -f``): a write past the limit fails with
EFBIG (Python ignores SIGXFSZ), which is what the writers see when a disk or quota is full.

A read-only folder is a ``chmod 555`` one. Root ignores permission bits through two capabilities
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so under root the child ``run.py`` runs without them and
the kernel refuses its writes with EACCES, as for any user. Running it as ``nobody`` instead does
not work here: the venv's interpreter is a link into /root/.pyenv and /root is mode 0700, so uid
65534 can neither execute it nor read its standard library."""

import ctypes
import errno
import os
import re
import resource
import subprocess
import sys

import pytest

from keras_fgvc.atomic import naming

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 64 << 10  # 64 KiB: the demo's images and tables fit, the pixel cache (96 x 32 x 32 x 3) does not
HINT = (r"\(files written before this one are complete; free space or choose another runs_root / export\.dir, "
        r"then rerun with resume=true\)")
# before the run folder exists nothing of the run was written: there is nothing to resume
NOTHING_WRITTEN_HINT = r"\(free space or choose another runs_root / export\.dir\)"
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # <linux/prctl.h>, <linux/capability.h>


def test_a_full_disk_mid_run_is_one_line_and_leaves_no_partial_file(tmp_path):
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    args = ["smoke=true", f"runs_root={tmp_path}/runs", f"export.dir={tmp_path}/saved",
            f"data.demo_root={tmp_path}/demo", f"data.cache_dir={tmp_path}/cache"]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=tmp_path, capture_output=True,
                          text=True, preexec_fn=limit_file_size, timeout=600, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path))}/cache/pixels/\w+\.npy\.\d+\.tmp: File too large "
                        rf"while running {re.escape(str(tmp_path))}/runs/fivek/smoke \(files written before this one are "
                        r"complete; free space or choose another runs_root / export\.dir, then rerun with resume=true\)",
                        lines[0]), lines[0]
    left = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp") or p.name.endswith(".tmp")]
    assert left == [] and list((tmp_path / "cache" / "pixels").glob("*.npy")) == []  # nothing partial
    assert (tmp_path / "runs" / "fivek" / "smoke" / "config.yaml").stat().st_size > 0  # earlier files complete


@pytest.mark.parametrize("raised, named", [
    (OSError(27, "Can't synchronously write data (h5py's long text)"), ("/run/x.h5", "File too large")),
    (OSError(28, "No space left on device"), ("/run/x.h5", "No space left on device")),
    (OSError(13, "Permission denied", "/elsewhere"), ("/elsewhere", "Permission denied")),  # named already
])
def test_a_failed_write_names_its_file(raised, named):
    with pytest.raises(OSError) as error, naming("/run/x.h5"):
        raise raised
    assert (error.value.filename, error.value.strerror) == named and error.value.errno == raised.errno


def obeying_permissions():
    """A ``preexec_fn`` after which the child's writes into a ``chmod 555`` folder fail with EACCES.

    Not root: nothing to do. Root: the two capabilities that bypass permission bits are dropped
    from the bounding set; exec then gives the child (still uid 0, so it reads the venv under
    /root as before) only the capabilities left there. prctl is looked up before the fork: the
    forked child of a threaded process only calls it."""
    if os.geteuid() != 0:
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def drop():
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if prctl(PR_CAPBSET_DROP, ctypes.c_ulong(capability), 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {capability})")
    return drop


def run_obeying_permissions(tmp_path, *args):
    """``python run.py`` on the fivek smoke demo (caches and demo under ``tmp_path``), writes refused as for a user."""
    common = ["smoke=true", f"data.demo_root={tmp_path}/demo", f"data.cache_dir={tmp_path}/cache"]
    # the user's environment: tests/conftest.py's TF_CPP_MIN_LOG_LEVEL=2 would let TensorFlow's
    # oneDNN notice through, which run.py keeps quiet by default
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *common, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, preexec_fn=obeying_permissions(), timeout=600, check=False)


def read_only_folder(path):
    path.mkdir()
    path.chmod(0o555)
    return path


def assert_one_storage_line(done, pattern):
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.fullmatch(pattern, lines[0]), lines[0]


def temp_files(root):
    """Files the atomic writers leave only when interrupted: ``*.tmp`` files and hidden staging or
    set-aside folders (``.<name>-*``, ``.<name>.old-<pid>``)."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_a_read_only_runs_root_is_one_line_naming_it_and_nothing_is_written(tmp_path):
    runs = read_only_folder(tmp_path / "runs")
    done = run_obeying_permissions(tmp_path, f"runs_root={runs}", f"export.dir={tmp_path}/saved")
    # the first folder the run creates under runs_root, refused
    assert_one_storage_line(done, rf"error: {re.escape(str(runs))}/fivek: Permission denied while running "
                                  rf"{re.escape(str(runs))}/fivek/smoke {NOTHING_WRITTEN_HINT}")
    assert list(runs.iterdir()) == [] and temp_files(tmp_path) == []
    assert not (tmp_path / "saved").exists()  # nothing exported either


@pytest.mark.slow
def test_a_read_only_export_dir_after_training_is_one_line_naming_it_and_nothing_is_left(tmp_path):
    saved = read_only_folder(tmp_path / "saved")
    # stage=mask: the cheapest run that trains a stage and then exports it
    done = run_obeying_permissions(tmp_path, "stage=mask", f"runs_root={tmp_path}/runs", f"export.dir={saved}")
    run_dir = tmp_path / "runs" / "fivek" / "smoke"
    assert_one_storage_line(done, rf"error: {re.escape(str(saved))}/fivek: Permission denied while running "
                                  rf"{re.escape(str(run_dir))} {HINT}")
    assert "stage 'mask' epoch 1/1" in done.stdout  # the export failed after training, not before
    assert list(saved.iterdir()) == [] and temp_files(tmp_path) == []
    # what was written before the export is whole: the stage's weights load
    import h5py

    with h5py.File(run_dir / "mask" / "best.weights.h5") as weights:
        assert len(weights.keys()) > 0


@pytest.mark.parametrize("run_started", [False, True], ids=["nothing_written", "run_folder_exists"])
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT])
def test_every_storage_errno_is_the_same_one_line(code, run_started, tmp_path, monkeypatch, capsys):
    """A read-only mount (EROFS) or a forbidden file (EPERM) needs privileges to provoke; the branch
    of run.py that words them is the one the runs above go through. The hint offers resume=true
    only once the run folder exists."""
    import run
    from keras_fgvc import pipelines

    where = f"{tmp_path}/saved/fivek"

    def fails(cfg, command=None):
        raise OSError(code, os.strerror(code), where)

    monkeypatch.setattr(pipelines, "dispatch", fails)
    if run_started:
        (tmp_path / "runs" / "fivek" / "smoke").mkdir(parents=True)
    assert run.main(["smoke=true", f"runs_root={tmp_path}/runs", f"export.dir={tmp_path}/saved"]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(rf"error: {re.escape(where)}: {re.escape(os.strerror(code))} while running "
                        rf"{re.escape(str(tmp_path))}/runs/fivek/smoke {HINT if run_started else NOTHING_WRITTEN_HINT}",
                        line), line
