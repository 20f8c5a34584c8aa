"""The run directory: resolved config, logs, checkpoints, metrics.json, plots, tables.

Files are written atomically (temp file + rename) so an interrupted run never leaves a
half-written table or metrics file behind.
"""

import json
import os
import tempfile

import yaml


def atomic_write_text(path: str, text: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_config(run_dir: str, config: dict):
    atomic_write_text(os.path.join(run_dir, "config.yaml"), yaml.safe_dump(config, sort_keys=False))


def write_json(path: str, data: dict):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def write_table(path: str, table):
    atomic_write_text(path, table.to_csv(index=False))
