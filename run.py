#!/usr/bin/env python
"""keras_fgvc command line: compose config -> validate -> dispatch. ``python run.py --help``."""

import sys


def main(argv: list[str]) -> int:
    from keras_fgvc.config.compose import available_pipelines, compose
    from keras_fgvc.config.help import help_text
    from keras_fgvc.errors import UserError

    if any(arg in ("-h", "--help", "help") for arg in argv):
        print(help_text(available_pipelines()))
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
