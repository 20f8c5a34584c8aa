#!/usr/bin/env python
"""keras_fgvc command line: compose config -> validate -> dispatch. ``python run.py --help``."""

import errno
import os
import re
import sys

OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][A-Za-z0-9_.]*=")
# Errors of the machine, not of the code: a full disk or quota, a file-size limit, a read-only or
# forbidden folder. One line for the user; every file is written atomically, so none is partial.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras and find the devices with file descriptor 2 captured.

    TensorFlow 2.21's C++ runtime writes INFO lines (oneDNN, CUDA stubs, absl) to stderr on import,
    which no environment variable silences, and on a machine without an NVIDIA driver the device
    search logs ``E0000 ... failed call to cuInit`` (expected there, not an error). The CLI's own
    output (one ``error:`` line for bad input) must stay readable, so that text is dropped on a
    machine without a driver and passed on where there is one (a cuInit failure is real there).
    ``KERAS_FGVC_TF_LOGS=1`` passes everything on. An import that fails still raises with its traceback.
    """
    import tempfile

    from keras_fgvc.accelerator import has_nvidia_driver

    if os.environ.get("KERAS_FGVC_TF_LOGS") == "1":
        import tensorflow

        tensorflow.config.list_physical_devices()
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow

            tensorflow.config.list_physical_devices()  # the cuInit attempt happens here, once
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if has_nvidia_driver():
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))


def _storage_error(error: OSError) -> str:
    """``<file>: <reason>`` of a failed write (the writers name their file: keras_fgvc.atomic.naming)."""
    reason = error.strerror or str(error).splitlines()[0]
    return f"{error.filename}: {reason}" if error.filename else reason


def _storage_hint(cfg) -> str:
    """What to do after a storage error: resuming only makes sense once the run folder exists (a
    read-only runs_root fails before anything of the run is written)."""
    if cfg is None or not os.path.isdir(cfg.run_dir):
        return "(free space or choose another runs_root / export.dir)"
    return ("(files written before this one are complete; free space or choose another runs_root / export.dir, "
            "then rerun with resume=true)")


def main(argv: list[str]) -> int:
    # 3: TensorFlow's C++ "errors" that are expected on a CPU (cuInit without a driver, oneDNN's
    # "DT_UINT8 only with AVX-512" fallback) stay quiet; a real failure still raises in Python.
    if os.environ.get("KERAS_FGVC_TF_LOGS") != "1":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _import_tensorflow_quietly()
    import dataclasses

    import keras

    from keras_fgvc.config.compose import available_pipelines
    from keras_fgvc.config.help import help_text
    from keras_fgvc.errors import UserError

    if any(arg in ("-h", "--help", "help") for arg in argv):
        from keras_fgvc.config.compose import compose

        try:  # the chosen pipeline's values, with the other overrides applied
            cfg = compose([arg for arg in argv if OVERRIDE.match(arg)])
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(help_text(available_pipelines(), cfg))
        return 0
    multirun = any(arg in ("-m", "--multirun") for arg in argv)
    argv = [arg for arg in argv if arg not in ("-m", "--multirun")]
    # Anything not shaped key=value is a run folder for task=compare (``runs/cars/*`` expanded by
    # the shell); a sweep job's folder name has an "=" in it, but no dotted key before it.
    overrides = [arg for arg in argv if OVERRIDE.match(arg)]
    folders = [arg for arg in argv if not OVERRIDE.match(arg)]
    cfg = None
    try:
        from keras_fgvc.config.compose import compose_jobs

        configs = compose_jobs(overrides, multirun)
        if folders:
            if configs[0].task != "compare":
                raise UserError(f"unexpected argument '{folders[0]}': give key=value overrides "
                                "(folders are read only by task=compare)")
            configs = [dataclasses.replace(c, compare=dataclasses.replace(c.compare, runs=folders)) for c in configs]
        from keras_fgvc.pipelines import dispatch
        from keras_fgvc.tracking.run_dir import command_line

        for index, cfg in enumerate(configs):
            if len(configs) > 1:
                print(f"[{index + 1}/{len(configs)}] {cfg.run_dir}", flush=True)
                keras.backend.clear_session()  # each job builds its own graphs; free the last one's
            dispatch(cfg, command=command_line(sys.argv[1:]))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        during = f" while running {cfg.run_dir}" if cfg is not None else ""
        print(f"error: {_storage_error(error)}{during} {_storage_hint(cfg)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
