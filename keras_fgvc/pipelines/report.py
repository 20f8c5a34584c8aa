"""``task=report``: write (again) the report of an existing run folder: ``python run.py
pipeline=cars name=X task=report`` -> ``runs/cars/X/report.html`` and ``report.md``
(``tracking/report.py``; every pipeline run also writes it when it ends)."""

import os

from keras_fgvc.errors import UserError


def run(cfg) -> str:
    from keras_fgvc.tracking.report import write_report

    if not os.path.isfile(os.path.join(cfg.run_dir, "config.yaml")):
        raise UserError(f"task=report: {cfg.run_dir} is not a run folder (no config.yaml); "
                        "give the pipeline= and name= of a run")
    html_path, md_path = write_report(cfg.run_dir)
    print(f"report: {html_path} ({md_path})")
    return html_path
