"""Dataclass schemas for every config group. A key that is not declared here is an error.

The YAML files in ``pipelines/`` give the values; these classes give the names, types and
defaults, and are what the code reads (``cfg.train.epochs``).
"""

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class DemoDataConfig:
    num_images: int = 1500
    image_size: int = 96
    test_images: int = 200


@dataclass
class DataConfig:
    # None: generate (once) and use the pipeline's built-in demo data under ``demo_root``.
    root: Optional[str] = None
    format: str = "fivek"
    # Keyword options of the format's loader, e.g. {path_column: file, label_columns: [species]} for csv.
    source_options: dict = field(default_factory=dict)
    demo_root: str = "data/demo"
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    image_size: int = 64
    batch_size: int = 32
    # Fractions of the human-labelled rows kept out of training.
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # Decode each image once into a pixel cache shared by stages and runs (data/pixel_cache.py).
    cache: bool = True
    # Where image checks and decoded pixels are cached; None: $XDG_CACHE_HOME/keras_fgvc.
    cache_dir: Optional[str] = None
    # Unreadable images are skipped and listed in bad_files.txt; strict=true stops at the first.
    strict: bool = False
    # At most this many rows per split, stratified by class and seeded (0: all). Every pipeline's
    # smoke_settings set it, so smoke=true on a user's data stays a few minutes.
    max_rows: int = 0
    resize: str = "squash"  # squash | pad (keep aspect, letterbox) | crop (shorter side + centre crop)
    box_mode: str = "none"  # none | crop (to the object box) | erase_background (thesis C-10 / C-11)
    # task=to_tfrecord: the shard folder (local or gs://; "": <run dir>/tfrecords) and shards per split.
    # Existing shards are replaced only with export.overwrite=true.
    tfrecord_dir: str = ""
    tfrecord_shards: int = 8


@dataclass
class ModelConfig:
    backbone: str = "efficientnetv2_b0"
    # Keyword options of the backbone's builder, e.g. {out_channels: 320} for GhostNet.
    backbone_kwargs: dict = field(default_factory=dict)
    # keras.applications backbones: None (random init) or a local weights file.
    weights: Optional[str] = None
    # backbone="hub": a TF-Hub handle or local SavedModel directory.
    hub_handle: Optional[str] = None
    trainable_backbone: bool = True
    pooling: str = "avg"  # avg | gem
    embedding_dim: int = 0  # 0: the pooled features are the embedding
    # With embedding_dim > 0: BatchNorm on the pooled features before dropout, and after the Dense.
    neck_batchnorm: bool = False
    embedding_batchnorm: bool = True
    dropout: float = 0.2
    l2: float = 1e-4
    # Prediction heads on one embedding, any of: softmax | arcface | cosface (models/heads.py).
    # A margin head adds output "<head>_logits"; models.build.training_model feeds it the label.
    heads: list = field(default_factory=lambda: ["softmax"])
    margin_scale: float = 30.0  # s of every margin head
    margin: Optional[float] = None  # None: each head's paper margin (ArcFace 0.5 rad, CosFace 0.35)
    easy_margin: bool = False  # ArcFace: margin only where cos(theta) > 0
    mean: list = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list = field(default_factory=lambda: list(IMAGENET_STD))
    # The pixel range the backbone is fed (models/build.py input_scaling); the model's input stays
    # [0, 255]. auto (or null): the backbone's registered scale (hub: unit) | unit [0, 1] |
    # symmetric [-1, 1] | imagenet ((x / 255 - mean) / std with mean/std above) | raw [0, 255] |
    # dataset (the same with the training split's own mean/std, measured and cached by the driver:
    # data/normalization.py; they replace mean/std above in the run's config.yaml).
    input_scale: Optional[str] = "auto"
    # 3: RGB; 1: greyscale, decoded as one channel everywhere (training, prediction, export).
    img_channels: int = 3


@dataclass
class AugmentConfig:
    preset: str = "none"
    # A full list of {layer: kwargs} steps replaces the preset when given.
    steps: Optional[list] = None
    # Where image-only steps run: "model" (inside the training step, on the accelerator) or
    # "data" (in tf.data on the CPU). Label-mixing steps (CutMix, MixUp) always run in tf.data.
    # "auto": the model under TensorFlow, tf.data under JAX (the layers are TensorFlow ops, which a
    # jitted JAX step cannot run; "model" is refused there).
    runs_in: str = "auto"
    # Layer names of the preset's steps to leave out, e.g. [RandomAffine] (an ablation is one override).
    skip: list = field(default_factory=list)


@dataclass
class LossConfig:
    """One term of a stage's loss: ``weight * <name>(**kwargs)`` on one model output."""

    name: str = "sparse_ce"
    weight: float = 1.0
    kwargs: dict = field(default_factory=dict)


@dataclass
class StageConfig:
    """One training stage (training/stages.py). Unset values fall back to the ``train``/``augment`` groups."""

    name: str = "train"
    # "previous" (the stage before it, when there is one) | "none" | <an earlier stage's name> | <weights file>
    init_from: str = "previous"
    epochs: Optional[int] = None
    # Overrides of train.* optimiser/schedule keys for this stage, e.g. {learning_rate: 5e-5}.
    train: dict = field(default_factory=dict)
    # Overrides of model.* keys, e.g. a distillation student's {backbone: squeezenext_23v5_200}.
    model: dict = field(default_factory=dict)
    # "none" | "backbone" | "backbone_except_last_<N>" (the backbone's last N blocks keep training)
    freeze: str = "none"
    # Augmentation preset / steps / placement for this stage (None: the augment group's).
    augment: Optional[str] = None
    augment_steps: Optional[list] = None
    augment_runs_in: Optional[str] = None
    # {model output key: [loss terms]}; each output's targets come from ``targets`` or the driver's label.
    # The key "heads" stands for every head of the stage's model (model.heads: logits, arcface_logits, ...).
    losses: Dict[str, List[LossConfig]] = field(default_factory=lambda: {"logits": [LossConfig()]})
    # {model output key: table column}; outputs not named here get the driver's label column.
    targets: dict = field(default_factory=dict)
    # Distillation: the teacher, a stage name of this run or a .keras model file.
    teacher: Optional[str] = None
    # K: class-balanced training batches of P = data.batch_size / K classes with K images each
    # (data/sampling.py), for batch-hard triplet and center losses. None: plain shuffling.
    images_per_class: Optional[int] = None


@dataclass
class FinetuneConfig:
    """How a stage fine-tunes a pretrained backbone (training/finetune.py, docs/finetuning.md)."""

    # auto: "pretrained" when the stage's backbone is pretrained (model.weights set, or backbone=hub)
    # and it trains (freeze is not "backbone", model.trainable_backbone); "plain" otherwise.
    recipe: str = "auto"  # auto | plain | pretrained
    # Pretrained recipe, phase 1: epochs that train the head alone (backbone frozen, stage folder
    # <stage>_head), added before the stage's own epochs; 0: no head phase.
    head_epochs: int = 2
    # Phase 2: the backbone's learning rate as a fraction of train.learning_rate (the head's).
    backbone_lr_multiplier: float = 0.1
    # Phase 2: frozen: the backbone's BatchNorm layers run in inference mode (their ImageNet
    # moving statistics are used and kept); train: batch statistics, moving statistics updated.
    batchnorm: str = "frozen"  # frozen | train
    # batchnorm=train, Keras backbones only: momentum of the moving statistics (null: the backbone's).
    bn_momentum: Optional[float] = None
    # Phase 2: linear learning-rate warm-up in epochs (in place of train.warmup_epochs).
    warmup_epochs: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 8
    optimizer: str = "sgd"  # sgd | adam | adamw
    learning_rate: float = 0.05
    # "linear": learning_rate * global_batch / 256 (Goyal et al. 2017; VIPriors: 0.1 * B / 256).
    lr_scaling: str = "none"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    # False: BatchNorm gamma/beta and biases get no weight decay.
    decay_bn_and_bias: bool = True
    schedule: str = "cosine"  # cosine | multistep | plateau | exponential | constant
    warmup_epochs: float = 0.0
    milestones: list = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    decay_rate: float = 0.96  # exponential: lr * decay_rate ** epoch
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    plateau_monitor: str = "val_loss"
    # The metric that picks the best checkpoint and stops early (any logged metric).
    monitor: str = "val_loss"
    early_stopping_patience: int = 0  # 0: off
    steps_per_epoch: Optional[int] = None  # None: one pass over the training rows
    # Fine-tuning recipe for pretrained backbones (head first, BatchNorm frozen, lower backbone LR).
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # The pipeline's stages in order; ``stage=<name>`` runs one, ``stage=all`` every one.
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])


@dataclass
class RuntimeConfig:
    precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16
    # "auto" (XLA on accelerators, not on CPU) or a bool; YAML/CLI true/false arrive as bools.
    jit_compile: Any = "auto"
    # auto | none | mirrored | multi_worker | tpu; under JAX all but none are keras DataParallel over
    # the visible devices, and multi_worker is refused (training.precision)
    distribute: str = "auto"
    # Training steps per compiled call (Keras compile's steps_per_execution): "auto" is 32 on a TPU,
    # where each call is a host round trip, and 1 elsewhere; or an integer >= 1.
    steps_per_execution: Any = "auto"


@dataclass
class TrackingConfig:
    wandb: str = "offline"  # offline | online | disabled
    project: str = "keras_fgvc"
    tensorboard: bool = False


@dataclass
class ExportConfig:
    enabled: bool = True
    dir: str = "saved_models"
    overwrite: bool = False
    # TFLite files next to each SavedModel, any of float32 | int8 (int8 calibrates on training
    # images and is compared with the Keras model on the validation split).
    tflite: list = field(default_factory=list)
    calibration_images: int = 200
    # float32 | float16: how a retrieval SavedModel (hotel_id) stores its gallery; float16 halves it
    # (Kaggle's 44,703 x 4,096 gallery: 733 -> 366 MB) and scores are still computed in float32.
    gallery_dtype: str = "float32"


@dataclass
class CompareConfig:
    """``task=compare``: run folders side by side (tracking/compare.py)."""

    # Run folders; on the command line they are the positional arguments (shell globs expanded).
    runs: list = field(default_factory=list)
    # Where compare.md / .csv / _curves.png go; "": the runs' common parent folder.
    out: str = ""


@dataclass
class Config:
    pipeline: str = "fivek"
    task: str = "train"  # train | preview_augment | model_card | to_tfrecord | compare | report
    stage: str = "all"
    smoke: bool = False
    # Settings applied when smoke=true, as {dotted.key: value}; explicit overrides still win.
    smoke_settings: dict = field(default_factory=dict)
    seed: int = 0
    # The run directory is <runs_root>/<pipeline>/<name>: fixed by these keys, never a timestamp,
    # so the command of a killed run plus resume=true finds it again.
    name: str = "default"
    runs_root: str = "runs"
    # Continue the run in the run directory: stages that finished are loaded, not retrained; an
    # interrupted stage continues from its last completed epoch (weights, optimizer state and
    # schedule position, best checkpoint, history.csv). Without it, a stage that an interrupted run
    # left half trained is refused rather than overwritten. Nothing to resume: a new run starts.
    resume: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    @property
    def run_dir(self) -> str:
        import os

        return os.path.join(self.runs_root, self.pipeline, self.name)


# Options that belong to one pipeline: {pipeline: (group key, dataclass)}, registered by its driver
# (keras_fgvc.pipelines) so that composing another pipeline with those keys is an unknown-key error.
PIPELINE_OPTIONS: dict[str, tuple[str, type]] = {}


# pipeline -> the steps its driver runs after the training stages (``stage=<step>`` selects one).
PIPELINE_STEPS: dict[str, tuple[str, ...]] = {}


def register_pipeline_options(pipeline: str, key: str, options: type, steps: tuple[str, ...] = ()):
    """Declare ``<key>.*`` (a dataclass) as pipeline ``pipeline``'s own config group, and the
    driver's own ``steps`` after training (Hotel-ID: embed, rank), which ``stage=`` may name too."""
    PIPELINE_OPTIONS[pipeline] = (key, options)
    PIPELINE_STEPS[pipeline] = tuple(steps)
    return options


def schema_for(pipeline: str) -> type:
    """The Config dataclass of ``pipeline``: the shared groups plus its driver's options group."""
    from keras_fgvc.pipelines import import_driver

    import_driver(pipeline)  # drivers register their options on import
    if pipeline not in PIPELINE_OPTIONS:
        return Config
    key, options = PIPELINE_OPTIONS[pipeline]
    return _with_group(pipeline, key, options)


@functools.cache
def _with_group(pipeline: str, key: str, options: type) -> type:
    name = "".join(part.title() for part in pipeline.split("_")) + "Config"
    return dataclasses.make_dataclass(name, [(key, options, field(default_factory=options))], bases=(Config,))


@dataclass(frozen=True)
class Range:
    """Allowed numeric values of a key: ``low <= v`` (``low < v`` with ``open_low``), likewise high."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False
    # A word the key also takes besides integers, e.g. "auto" (such a key is typed Any).
    word: Optional[str] = None

    def holds(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        described = " and ".join(parts)
        return f"'{self.word}' or an integer {described}" if self.word else described


_POSITIVE, _NON_NEGATIVE, _FRACTION = Range(0, open_low=True), Range(0), Range(0, 1, open_high=True)
# Allowed ranges of numeric keys (validate() checks them at compose time, before anything is
# written); a key of another pipeline's options group is skipped. Relations between keys are in
# config/names.py (check_relations).
RANGES: dict[str, Range] = {
    "seed": _NON_NEGATIVE,
    "data.image_size": Range(8),
    "data.batch_size": Range(1),
    "data.val_fraction": _FRACTION,
    "data.test_fraction": _FRACTION,
    "data.demo.num_images": Range(1),
    "data.demo.image_size": Range(16),
    "data.demo.test_images": _NON_NEGATIVE,
    "data.tfrecord_shards": Range(1),
    "data.max_rows": _NON_NEGATIVE,
    "model.dropout": _FRACTION,
    "model.l2": _NON_NEGATIVE,
    "model.embedding_dim": _NON_NEGATIVE,
    "model.margin_scale": _POSITIVE,
    "train.epochs": Range(1),
    "train.learning_rate": _POSITIVE,
    "train.momentum": _FRACTION,
    "train.weight_decay": _NON_NEGATIVE,
    "train.warmup_epochs": _NON_NEGATIVE,
    "train.gamma": Range(0, 1, open_low=True),
    "train.decay_rate": Range(0, 1, open_low=True),
    "train.early_stopping_patience": _NON_NEGATIVE,
    "train.steps_per_epoch": Range(1),
    "runtime.steps_per_execution": Range(1, word="auto"),
    "export.calibration_images": Range(1),
    "pseudo_label.threshold": Range(0, 1),
    "hotel_id.k": Range(1),
    "hotel_id.rerank_neighbours": _NON_NEGATIVE,
    "hotel_id.rerank_alpha": _NON_NEGATIVE,
    "cars.label_smoothing": _FRACTION,
    "squeeze.temperature": _POSITIVE,
    "squeeze.alpha": Range(0, 1),
    "squeeze.demo_classes": Range(2, 30),
    "squeeze.demo_images_per_split": Range(1),
    "squeeze.timing_seconds": _POSITIVE,
    "vipriors.tta_reference_size": Range(8),
    "vipriors.demo_classes": Range(2, 30),
    "vipriors.demo_images_per_split": Range(1),
}

# Allowed values for string choices; validate() checks them.
CHOICES: dict[str, tuple[Any, ...]] = {
    "task": ("train", "preview_augment", "model_card", "to_tfrecord", "compare", "report"),
    "model.pooling": ("avg", "gem"),
    "model.heads": ("softmax", "arcface", "cosface"),
    "model.input_scale": (None, "auto", "unit", "symmetric", "imagenet", "raw", "dataset"),
    "model.img_channels": (1, 3),
    "train.finetune.recipe": ("auto", "plain", "pretrained"),
    "train.finetune.batchnorm": ("frozen", "train"),
    "export.tflite": ("float32", "int8"),
    "export.gallery_dtype": ("float32", "float16"),
    "augment.runs_in": ("auto", "model", "data"),
    "train.optimizer": ("sgd", "adam", "adamw"),
    "pseudo_label.tta": ("none", "flip"),
    "train.schedule": ("cosine", "multistep", "plateau", "exponential", "constant"),
    "train.lr_scaling": ("none", "linear"),
    "runtime.precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    "runtime.jit_compile": ("auto", True, False),
    "runtime.distribute": ("auto", "none", "mirrored", "multi_worker", "tpu"),
    "tracking.wandb": ("offline", "online", "disabled"),
    "hotel_id.rerank": ("none", "dba_aqe"),
    "squeeze.teacher_losses": ("center", "prelogit_norm", "hard_mining", "batch_hard_triplet"),
    "vipriors.finetune": ("triplet", "arcface"),
}
