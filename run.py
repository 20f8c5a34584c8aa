#!/usr/bin/env python
"""keras_fgvc command line: compose config -> validate -> dispatch. ``python run.py --help``."""

import os
import sys


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras with file descriptor 2 pointed at /dev/null.

    TensorFlow 2.21's C++ runtime writes INFO lines (oneDNN, CUDA stubs, absl) to stderr on import,
    which no environment variable silences; the CLI's own output (one ``error:`` line for bad
    input) must stay readable. An import that fails still raises with its traceback.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _import_tensorflow_quietly()
    from keras_fgvc.config.compose import available_pipelines, compose
    from keras_fgvc.config.help import help_text
    from keras_fgvc.errors import UserError

    if any(arg in ("-h", "--help", "help") for arg in argv):
        from keras_fgvc.config.compose import DEFAULT_PIPELINE
        from keras_fgvc.config.schema import schema_for

        chosen = next((a.split("=", 1)[1] for a in argv if a.startswith("pipeline=")), DEFAULT_PIPELINE)
        pipelines = available_pipelines()
        print(help_text(pipelines, schema_for(chosen if chosen in pipelines else DEFAULT_PIPELINE)))
        return 0
    try:
        cfg = compose(argv)
        from keras_fgvc.pipelines import dispatch

        dispatch(cfg)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
