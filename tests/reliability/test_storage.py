"""A full disk or a file-size limit mid-run: one `error:` line naming the file, exit code 2, and no
partial or temporary file left behind (every writer goes through a temp file and a rename).

A full disk is simulated with RLIMIT_FSIZE (``ulimit -f``): a write past the limit fails with
EFBIG (Python ignores SIGXFSZ), which is what the writers see when a disk or quota is full."""

import os
import re
import resource
import subprocess
import sys

import pytest

from keras_fgvc.atomic import naming

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 64 << 10  # 64 KiB: the demo's images and tables fit, the pixel cache (96 x 32 x 32 x 3) does not


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
