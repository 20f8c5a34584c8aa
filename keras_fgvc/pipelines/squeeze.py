"""Squeeze your model: a staged teacher, SqueezeNext students by distillation, the size/speed table
(SYSTEMS.md section 4; seed 003, the course project).

The stages are ``pipelines/squeeze.yaml`` values and run through the shared single-label flow
(``pipelines/classifier.py``); what is Squeeze-specific lives here:

    options   ``squeeze.*``: the teacher (a stage of this run or a user's model file), the KD
              temperature and alpha, which of the teacher's extra losses are on (the ablation)
    demo      the textured-shapes demo (``data.synthetic.imagenet_subset``) written as ``csv``
              tables with their own train / val / test split, as a user's data would come
    report    ``comparison.md`` / ``comparison.csv``: one row per model (``pipelines/squeeze_report.py``)

A user's teacher (``squeeze.teacher=model.keras`` or ``.h5``) replaces the ``teacher*`` stages;
``squeeze.students`` names the student backbones to train (``[]``: the teacher levels only, the
ablation runs).
"""

import dataclasses
import os
from dataclasses import dataclass, field

import pandas as pd

from keras_fgvc.config.schema import register_pipeline_options
from keras_fgvc.data import synthetic
from keras_fgvc.errors import UserError
from keras_fgvc.pipelines import classifier

# Stages whose name starts with this are the teacher's levels (seed 003: --finetune_level 0/1/2);
# a user's teacher file replaces them.
TEACHER_PREFIX = "teacher"
# The teacher's extra losses of seed 003 (its ablation columns besides augmentation), by registry name.
TEACHER_EXTRAS = ("center", "prelogit_norm", "hard_mining", "batch_hard_triplet")
TEACHER_FILE_TYPES = (".keras", ".h5")
# Seed 003's students: SqueezeNext-23v5 at widths 1.0x and 2.0x.
STUDENT_BACKBONES = ("squeezenext_23v5_100", "squeezenext_23v5_200")
STEPS = ("report",)


@dataclass
class SqueezeConfig:
    # The distillation teacher: a teacher stage of this run, or a .keras / .h5 model file (Keras
    # safe mode), which then replaces the teacher stages. The kd stages read it: teacher: ${squeeze.teacher}.
    teacher: str = "teacher2"
    # Hinton et al. 2015: softmax temperature T and the weight of the hard-label CE (the soft term
    # gets 1 - alpha); losses/distillation.py.
    temperature: float = 4.0
    alpha: float = 0.1
    # The teacher's extra losses that stay on (the ablation: one override per row of seed 003's table).
    teacher_losses: list = field(default_factory=lambda: list(TEACHER_EXTRAS))
    # The student backbones whose stages (alone and distilled) this run trains, by the stages'
    # model.backbone; [] trains the teacher levels only (the ablation runs need no students).
    students: list = field(default_factory=lambda: list(STUDENT_BACKBONES))
    # Demo data: classes and images per class in each of train, val and test.
    demo_classes: int = 10
    demo_images_per_split: int = 40
    # Report: images/s at these batch sizes, each timed at least timing_seconds (after warm-up).
    timing_batches: list = field(default_factory=lambda: [1, 32])
    timing_seconds: float = 2.0


register_pipeline_options("squeeze", "squeeze", SqueezeConfig, steps=STEPS)


def data_root(cfg) -> str:
    """``data.root``, or the demo data (generated on first use) as csv tables with their own split.

    Example:
        >>> data_root(compose(["pipeline=squeeze", "smoke=true"]))  # doctest: +SKIP
        'data/demo/smoke/squeeze-c3-n6-s32-seed0'
    """
    if not cfg.data.root and cfg.data.format != "csv":
        raise UserError(f"data.format={cfg.data.format} needs data.root (the demo data is data.format=csv)")
    options, size = cfg.squeeze, cfg.data.demo.image_size

    def generate(root):
        synthetic.make("imagenet_subset", root, seed=cfg.seed, num_classes=options.demo_classes,
                       images_per_split=options.demo_images_per_split, image_size=size)
        write_split_tables(root)

    return synthetic.demo_root(cfg, f"squeeze-c{options.demo_classes}-n{options.demo_images_per_split}-s{size}",
                               "test.csv", generate)


def write_split_tables(root: str):
    """``train.csv``, ``val.csv``, ``test.csv`` (path, label) of the imagenet_subset demo at ``root``.

    The demo's test folder is flat with its truth aside (``test_truth.csv``); the tables give every
    split its labels, so the report scores test as well. Labels are the sorted wnids' indices.
    test.csv is written last: its presence marks a complete demo.
    """
    from keras_fgvc.tracking.run_dir import write_table

    wnids = sorted(os.listdir(os.path.join(root, "train")))
    index = {wnid: i for i, wnid in enumerate(wnids)}
    for split in ("train", "val"):
        rows = [(f"{split}/{wnid}/{name}", index[wnid]) for wnid in wnids
                for name in sorted(os.listdir(os.path.join(root, split, wnid)))]
        write_table(os.path.join(root, f"{split}.csv"), pd.DataFrame(rows, columns=["path", "label"]))
    truth = pd.read_csv(os.path.join(root, "test_truth.csv"))
    test = pd.DataFrame({"path": "test/" + truth["image_id"], "label": truth["wnid"].map(index)})
    write_table(os.path.join(root, "test.csv"), test)


def is_teacher_stage(stage) -> bool:
    return stage.name.startswith(TEACHER_PREFIX)


def user_teacher(cfg) -> str | None:
    """The teacher model file ``squeeze.teacher`` names, or None when it names a stage of this run."""
    return None if cfg.squeeze.teacher in [s.name for s in cfg.train.stages] else cfg.squeeze.teacher


def load_user_teacher(path: str):
    """The user's teacher model (Keras safe mode: no arbitrary code runs); UserError if it cannot be."""
    from keras_fgvc.models.loading import load_keras_model

    if not path.endswith(TEACHER_FILE_TYPES):
        raise UserError(f"config key 'squeeze.teacher' = {path!r}: give a teacher stage of this run or a "
                        f"{' / '.join(TEACHER_FILE_TYPES)} model file")
    if not os.path.isfile(path):
        raise UserError(f"config key 'squeeze.teacher': model file {path} not found")
    try:
        return load_keras_model(path, compile=False)
    except UserError as error:  # already says what is wrong with the file (a Lambda layer refused)
        raise UserError(f"config key 'squeeze.teacher': {error}") from None
    except Exception as error:  # noqa: BLE001 - any reason a file is no loadable model: one line for the user
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise UserError(f"config key 'squeeze.teacher': cannot load {path} as a Keras model: {reason}") from None


def teacher_logits_size(model) -> int:
    """Classes of a teacher's ``logits`` (its single output when it has no dict of outputs)."""
    output = model.output["logits"] if isinstance(model.output, dict) else model.output
    return int(output.shape[-1])


def run_stages(cfg):
    """``cfg`` with the stages this run trains: no teacher stages under a user's teacher, no
    student stages but those of the ``squeeze.students`` backbones, and the teacher's extra losses
    that ``squeeze.teacher_losses`` leaves out removed (hard mining falls back to its base loss)."""
    stages = [s for s in cfg.train.stages if not (user_teacher(cfg) and is_teacher_stage(s))]
    stages = [s for s in stages if is_teacher_stage(s) or student_backbone(s) in cfg.squeeze.students]
    stages = [without_extras(s, cfg.squeeze.teacher_losses) for s in stages]
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stages=stages))


def student_backbone(stage) -> str | None:
    return stage.model.get("backbone")


def check_students(cfg) -> None:
    """Each ``squeeze.students`` entry is the backbone of a student stage of the YAML."""
    known = sorted({student_backbone(s) for s in cfg.train.stages if not is_teacher_stage(s)} - {None})
    for name in cfg.squeeze.students:
        if name not in known:
            raise UserError(f"config key 'squeeze.students': {name!r} is no student stage's backbone; "
                            f"choose from {', '.join(known)} (or [] for the teacher levels only)")


def without_extras(stage, keep):
    """``stage`` without the loss terms named in TEACHER_EXTRAS but not in ``keep``.

    Example:
        >>> [t.name for t in without_extras(teacher2, ["center"]).losses["pre_logits"]]  # doctest: +SKIP
        ['center']
    """
    from keras_fgvc.config.schema import LossConfig

    losses = {}
    for output, terms in stage.losses.items():
        kept = []
        for term in terms:
            if term.name == "hard_mining" and term.name not in keep:
                term = LossConfig(term.kwargs["loss"], term.weight, dict(term.kwargs.get("loss_kwargs") or {}))
            elif term.name in TEACHER_EXTRAS and term.name not in keep:
                continue
            kept.append(term)
        if kept:
            losses[output] = kept
    return dataclasses.replace(stage, losses=losses)


def check_can_run(cfg, trained) -> None:
    """Before anything is written: a user teacher loads and fits the data; ``stage=`` names a stage
    this run trains; ``stage=report`` finds the run's files."""
    check_students(cfg)
    batches = cfg.squeeze.timing_batches
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batches):
        raise UserError(f"config key 'squeeze.timing_batches' = {batches!r}: give batch sizes, integers >= 1")
    names = [s.name for s in trained.train.stages]
    if cfg.stage not in ("all", *STEPS) and cfg.stage not in names:
        why = "a teacher file replaces the teacher stages" if user_teacher(cfg) else "squeeze.students leaves it out"
        raise UserError(f"stage={cfg.stage} is not trained in this run ({why}); stages: {', '.join(names)}")
    if cfg.stage == "report":
        from keras_fgvc.pipelines.squeeze_report import check_report_inputs

        check_report_inputs(trained)


def check_teacher_fits(cfg, model, root: str) -> None:
    """A user's teacher predicts as many classes as the data set has (else the KD term cannot pair them)."""
    path = user_teacher(cfg)
    classes = classifier.num_classes_of(classifier.split_tables(cfg, root))
    if teacher_logits_size(model) != classes:
        raise UserError(f"config key 'squeeze.teacher': {path} predicts {teacher_logits_size(model)} classes, "
                        f"the data set has {classes}")


def run(cfg) -> dict:
    """Train the stages ``cfg.stage`` selects, then (``stage=all`` or ``report``) write the report."""
    from keras_fgvc.pipelines import squeeze_report

    trained = run_stages(cfg)
    check_can_run(cfg, trained)
    teacher = load_user_teacher(user_teacher(cfg)) if user_teacher(cfg) else None
    root = data_root(cfg)
    if teacher is not None:
        check_teacher_fits(cfg, teacher, root)
    summary = {} if cfg.stage in STEPS else classifier.run(trained, root)
    if cfg.stage in ("all", "report"):
        summary["report"] = squeeze_report.write(trained, root)
    return summary
