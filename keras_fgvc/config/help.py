"""``python run.py --help``: usage, pipelines, tasks and every config key with its default."""

import dataclasses

from keras_fgvc.config.schema import CHOICES, RANGES
from keras_fgvc.config.validate import _list_item

USAGE = """usage: python run.py [-m] [pipeline=NAME] [stage=STAGE] [task=TASK] [smoke=true] [key=value ...] [RUN_DIR ...]

Runs a keras_fgvc pipeline. Overrides use Hydra syntax (key=value, dotted keys for nested
groups); an unknown key is an error (exit code 2) that lists the valid keys.

examples:
  python run.py                                   5K pseudo-labelling, all stages, on demo data
  python run.py stage=mask                        one stage (the stages of a pipeline are listed below)
  python run.py data.root=/data/zalo5k            the same on the real Zalo layout
  python run.py smoke=true                        a wiring check on tiny data (each YAML header gives its
                                                  size and measured time)
  python run.py pipeline=fivek task=preview_augment   a PNG grid of augmented training images
  python run.py task=model_card                   parameters, MACs, size and images/s of the model
  python run.py pipeline=cars                     GhostNet from scratch, the Cars thesis' recipe (ablations:
                                                  pipelines/cars.yaml header)
  python run.py -m pipeline=cars model.dropout=0.1,0.2,0.3   a sweep: one run per value, runs/cars/<name>-<key=value>
  python run.py task=compare runs/cars/*          runs side by side: differing keys, best val, test top-1, curves
  python run.py pipeline=cars name=X task=report  the run's report.html + report.md again (each run writes them)
  python run.py pipeline=hotel_id                 ArcFace embeddings, gallery retrieval, MAP@5, submission.csv
  python run.py pipeline=hotel_id hotel_id.ensemble=[runs/hotel_id/a,runs/hotel_id/b] name=ens   an ensemble
  python run.py pipeline=cars --help              this page with that pipeline's values and stages
  python run.py model.backbone=hub model.hub_handle=DIR   a pretrained backbone: each stage trains the head
                                                  first, then fine-tunes with BatchNorm frozen and a lower
                                                  backbone LR (train.finetune.*, docs/finetuning.md);
                                                  model.input_scale=symmetric for a [-1, 1] module
"""


def help_text(pipelines: list[str], cfg) -> str:
    """The help page with ``cfg``'s values: the chosen pipeline's YAML and the command line's
    overrides, its own options group, its stages and steps."""
    from keras_fgvc.config.schema import PIPELINE_STEPS

    stages = [stage.name for stage in cfg.train.stages]
    steps = PIPELINE_STEPS.get(cfg.pipeline, ())
    lines = [USAGE, f"pipelines: {', '.join(pipelines)} (files in pipelines/)", "",
             f"stages of pipeline={cfg.pipeline}: {', '.join([*stages, *steps])} (stage=all runs them in order)", "",
             f"config keys of pipeline={cfg.pipeline} (its values, after the overrides given):"]
    lines += _describe(cfg, "")
    return "\n".join(lines)


def _describe(node, prefix):
    lines = []
    for f in dataclasses.fields(node):
        dotted = prefix + f.name
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            lines += _describe(value, dotted + ".")
            continue
        if _list_item(f.type) is not None:  # train.stages: a list of stage configs, indexed on the command line
            lines.append(f"  {dotted}: set one entry's key as {dotted}.<index>.<key>; entries:")
            lines += [f"    {index}: {_stage_line(stage)}" for index, stage in enumerate(value)]
            continue
        choices = CHOICES.get(dotted)
        limits = RANGES.get(dotted)
        suffix = f"   one of: {', '.join(map(str, choices))}" if choices else (
            f"   {limits.describe()}" if limits else "")
        lines.append(f"  {dotted} = {value!r}{suffix}")
    return lines


def _stage_line(stage) -> str:
    losses = "; ".join(f"{output}: {', '.join(term.name for term in terms)}" for output, terms in stage.losses.items())
    extras = [f"{key}={value!r}" for key, value in (("epochs", stage.epochs), ("train", stage.train),
                                                     ("model", stage.model), ("targets", stage.targets),
                                                     ("augment", stage.augment), ("teacher", stage.teacher))
              if value not in (None, {}, [])]
    return " ".join([f"name={stage.name}", f"init_from={stage.init_from}", f"losses={{{losses}}}", *extras])
