"""The run directory: resolved config, logs, checkpoints, metrics.json, plots, tables.

Files are written atomically (temp file + rename) so an interrupted run never leaves a
half-written table or metrics file behind. One process at a time works in a run folder
(``run_lock``).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile

import yaml

from keras_fgvc.atomic import atomic_open
from keras_fgvc.errors import UserError

LOCKS_DIR = os.path.join(tempfile.gettempdir(), "keras_fgvc", "locks")


def command_line(overrides) -> str:
    """``python run.py <overrides>`` as a user would repeat it, with the Keras backend in front when
    it is not the default (a JAX run repeated without it would run on TensorFlow)."""
    import keras

    backend = keras.backend.backend()
    return " ".join(([f"KERAS_BACKEND={backend}"] if backend != "tensorflow" else []) + ["python run.py", *overrides])


def atomic_write_text(path: str, text: str):
    with atomic_open(path) as f:
        f.write(text)


def write_config(run_dir: str, config: dict):
    atomic_write_text(os.path.join(run_dir, "config.yaml"), yaml.safe_dump(config, sort_keys=False))


def write_json(path: str, data: dict):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def merge_json(path: str, update: dict) -> dict:
    """Write ``path`` as its current content (if any) with ``update``'s top-level keys replaced:
    a run whose stages run one at a time (``stage=X``) keeps every stage's numbers. Returns it."""
    merged = {**(read_json(path) if os.path.isfile(path) else {}), **update}
    write_json(path, merged)
    return merged


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def write_table(path: str, table):
    atomic_write_text(path, table.to_csv(index=False))


def _lock_path(run_dir: str) -> str:
    """The lock file of a run folder: outside it, so a run that refuses writes nothing in runs/.
    Each worker of a multi-worker job (``TF_CONFIG``'s task) holds its own."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    key = f"{os.path.realpath(run_dir)}#{task.get('type', '')}{task.get('index', '')}"
    return os.path.join(LOCKS_DIR, hashlib.sha256(key.encode()).hexdigest()[:24] + ".lock")


@contextlib.contextmanager
def run_lock(run_dir: str):
    """Hold ``run_dir`` for this process; a second process on it raises UserError at once.

    ``flock`` is released by the kernel when the holder exits, SIGKILL included, so a killed run
    never leaves a stale lock behind and ``resume=true`` can start straight away. (flock is
    advisory and local to one machine: two hosts sharing runs/ over NFS are not kept apart.)
    """
    os.makedirs(LOCKS_DIR, exist_ok=True)
    path = _lock_path(run_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(f"run folder {run_dir} is in use by another process (pid {holder}); wait for it "
                            "to finish, or start this run under another name=") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
