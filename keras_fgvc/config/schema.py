"""Dataclass schemas for every config group. A key that is not declared here is an error.

The YAML files in ``pipelines/`` give the values; these classes give the names, types and
defaults, and are what the code reads (``cfg.train.epochs``).
"""

from dataclasses import dataclass, field
from typing import Any, Optional

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
    demo_root: str = "data/demo"
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    image_size: int = 64
    batch_size: int = 32
    # Fractions of the human-labelled rows kept out of training.
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    cache: bool = True


@dataclass
class ModelConfig:
    backbone: str = "efficientnetv2_b0"
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


@dataclass
class AugmentConfig:
    preset: str = "none"
    # A full list of {layer: kwargs} steps replaces the preset when given.
    steps: Optional[list] = None


@dataclass
class TrainConfig:
    epochs: int = 8
    optimizer: str = "sgd"  # sgd | adamw
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    early_stopping_patience: int = 0  # 0: off
    steps_per_epoch: Optional[int] = None  # None: one pass over the training rows


@dataclass
class RuntimeConfig:
    precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16
    # "auto" (XLA on accelerators, not on CPU) or a bool; YAML/CLI true/false arrive as bools.
    jit_compile: Any = "auto"
    distribute: str = "auto"  # auto | none | mirrored | multi_worker | tpu


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


@dataclass
class PseudoLabelConfig:
    # A pseudo label is accepted only when the model's top probability reaches this.
    threshold: float = 0.9
    # Explicit completed table to start a stage from (default: the previous stage's in the run dir).
    input_table: Optional[str] = None
    # Start each stage from the previous stage's best weights in the run dir (staged fine-tuning:
    # the distancing and 5k models reuse what the mask model learned about people).
    warm_start: bool = True
    # Epochs per stage, e.g. {mask: 12, distancing: 8, fivek: 4}; a stage not listed uses train.epochs.
    stage_epochs: dict = field(default_factory=dict)


@dataclass
class Config:
    pipeline: str = "fivek"
    task: str = "train"  # train | preview_augment | model_card
    stage: str = "all"
    smoke: bool = False
    # Settings applied when smoke=true, as {dotted.key: value}; explicit overrides still win.
    smoke_settings: dict = field(default_factory=dict)
    seed: int = 0
    name: str = "default"
    runs_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)

    @property
    def run_dir(self) -> str:
        import os

        return os.path.join(self.runs_root, self.pipeline, self.name)


# Allowed values for string choices; validate() checks them.
CHOICES: dict[str, tuple[Any, ...]] = {
    "task": ("train", "preview_augment", "model_card"),
    "model.pooling": ("avg", "gem"),
    "model.heads": ("softmax", "arcface", "cosface"),
    "export.tflite": ("float32", "int8"),
    "train.optimizer": ("sgd", "adamw"),
    "train.schedule": ("cosine", "constant"),
    "runtime.precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    "runtime.jit_compile": ("auto", True, False),
    "runtime.distribute": ("auto", "none", "mirrored", "multi_worker", "tpu"),
    "tracking.wandb": ("offline", "online", "disabled"),
}
