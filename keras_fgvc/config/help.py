"""``python run.py --help``: usage, pipelines, tasks and every config key with its default."""

import dataclasses

from keras_fgvc.config.schema import CHOICES, Config
from keras_fgvc.config.validate import _list_item

USAGE = """usage: python run.py [-m] [pipeline=NAME] [stage=STAGE] [task=TASK] [smoke=true] [key=value ...] [RUN_DIR ...]

Runs a keras_fgvc pipeline. Overrides use Hydra syntax (key=value, dotted keys for nested
groups); an unknown key is an error (exit code 2) that lists the valid keys.

examples:
  python run.py                                   5K pseudo-labelling, all stages, on demo data
  python run.py stage=mask                        one stage (stages: mask, distancing, fivek, all)
  python run.py data.root=/data/zalo5k            the same on the real Zalo layout
  python run.py smoke=true                        a tiny sub-minute run
  python run.py pipeline=fivek task=preview_augment   a PNG grid of augmented training images
  python run.py task=model_card                   parameters, MACs, size and images/s of the model
  python run.py pipeline=cars                     GhostNet from scratch, the Cars thesis' recipe (ablations:
                                                  pipelines/cars.yaml header)
  python run.py -m pipeline=cars model.dropout=0.1,0.2,0.3   a sweep: one run per value, runs/cars/<name>-<key=value>
  python run.py task=compare runs/cars/*          runs side by side: differing keys, best val, test top-1, curves
  python run.py model.backbone=hub model.hub_handle=DIR   a pretrained backbone: each stage trains the head
                                                  first, then fine-tunes with BatchNorm frozen and a lower
                                                  backbone LR (train.finetune.*, docs/finetuning.md);
                                                  model.input_scale=symmetric for a [-1, 1] module
"""


def help_text(pipelines: list[str], schema=Config) -> str:
    """The help page; ``schema`` is the chosen pipeline's (its own options group included)."""
    lines = [USAGE, f"pipelines: {', '.join(pipelines)} (files in pipelines/)", "", "config keys (default):"]
    lines += _describe(schema, "")
    return "\n".join(lines)


def _describe(schema, prefix):
    lines = []
    for f in dataclasses.fields(schema):
        dotted = prefix + f.name
        if dataclasses.is_dataclass(f.type):
            lines += _describe(f.type, dotted + ".")
            continue
        item = _list_item(f.type)
        if item is not None:  # train.stages: a list of stage configs, indexed on the command line
            lines.append(f"  {dotted} = [...]   a list; set one entry's key as {dotted}.<index>.<key>, keys:")
            lines += [f"    {line.strip()}" for line in _describe(item, "")]
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        choices = CHOICES.get(dotted)
        suffix = f"   one of: {', '.join(map(str, choices))}" if choices else ""
        lines.append(f"  {dotted} = {default!r}{suffix}")
    return lines
