"""``task=compare``: the experiment dashboard over run folders (the thesis used Neptune).

Prints one Markdown table (the hyper-parameters that differ, best validation value, test top-1,
epochs, params, time; best run first) and writes compare.md, compare.csv, compare_curves.png and
compare.html (the table and the curves in one page that opens offline) to ``compare.out`` ("": the
runs' common parent folder).
"""

from keras_fgvc.tracking.compare import compare


def run(cfg) -> dict:
    """Compare ``cfg.compare.runs`` (run folders, globs already expanded by the shell).

    Example:
        python run.py task=compare runs/fivek/*
    """
    return compare(list(cfg.compare.runs), cfg.compare.out)
