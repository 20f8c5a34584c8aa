"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The writer fills a temporary sibling of the target (same folder, so the same file system and an
atomic rename) and ``os.replace``s it over the target once everything is written and synced. No
TensorFlow or Keras import, so tools that must stay light (``benchmarks/run_all.py``) use it too.
"""

import contextlib
import glob
import os
import shutil
import tempfile


@contextlib.contextmanager
def naming(path):
    """Re-raise a failed write's OSError that names no file (h5py, NumPy memmaps, ``write`` on an
    open handle) as one naming ``path``: a full disk is then one line that says which file."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, os.strerror(error.errno), path) from error


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", newline: str = ""):
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``.

    On an exception the temporary file is removed and any existing ``path`` is left untouched.

    Example:
        >>> with atomic_open("out/submission.csv") as f:
        ...     f.write("image_id,hotel_id\\n")
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        text = {} if "b" in mode else {"newline": newline, "encoding": "utf-8"}
        with naming(tmp_path), os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _aside_prefix(path: str) -> str:
    """Where ``replace_dir`` sets the old ``path`` aside: ``<dir>/.<name>.old-`` + the writer's pid."""
    return f"{os.path.join(os.path.dirname(os.path.abspath(path)), '.' + os.path.basename(path))}.old-"


def replace_dir(built: str, path: str) -> str:
    """Put the complete folder ``built`` (a sibling of ``path``) in place of ``path``.

    The old folder is renamed aside first and deleted only after the new one is in place, so a
    kill at any moment leaves the old folder or the new one whole (POSIX has no atomic swap of
    two folders: between the two renames ``path`` is briefly absent, never partial; ``recover_dir``
    puts the old one back).
    """
    old = f"{_aside_prefix(path)}{os.getpid()}"
    if os.path.isdir(path):
        os.replace(path, old)
    os.replace(built, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover_dir(path: str) -> list[str]:
    """Clean up after a ``replace_dir`` that was killed: when ``path`` is missing, the old folder it
    had set aside is renamed back (the newest, if several); every other set-aside copy is deleted.
    Only for a folder no other process is writing (a run folder under its lock). Returns the
    paths deleted.

    Example:
        >>> recover_dir("runs/hotel_id/default/embed")  # doctest: +SKIP
        []
    """
    aside = sorted(glob.glob(glob.escape(_aside_prefix(path)) + "*"), key=os.path.getmtime)
    if aside and not os.path.isdir(path):
        os.replace(aside.pop(), path)
    for folder in aside:
        shutil.rmtree(folder, ignore_errors=True)
    return aside
