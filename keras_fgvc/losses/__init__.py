"""Public losses (``keras_fgvc.losses``); importing the package registers every loss by name.

Margin (ArcFace/CosFace) training lives in the heads (``keras_fgvc.layers.ArcFace``/``CosFace``),
fed the label through the model's training view; their logits then take ``sparse_ce``.
The registry protocol the training engine follows is in ``keras_fgvc.losses.registry``.
"""

from keras_fgvc.losses.registry import LOSSES, apply_loss, build_loss, check_loss, loss_names  # noqa: F401

# Each module registers its losses on import; keep one import per family.
from keras_fgvc.losses.label_smoothing import LabelSmoothingCrossEntropy  # noqa: F401, E402
from keras_fgvc.losses.masked import MaskedBinaryCrossentropy, MaskedSparseCategoricalCrossentropy  # noqa: F401, E402
from keras_fgvc.losses.triplet import BatchAllTripletLoss, BatchHardTripletLoss  # noqa: F401, E402
from keras_fgvc.losses.center import CenterLoss  # noqa: F401, E402
from keras_fgvc.losses.prelogit_norm import PreLogitNormLoss  # noqa: F401, E402
from keras_fgvc.losses.distillation import KnowledgeDistillationLoss  # noqa: F401, E402
from keras_fgvc.losses.hard_mining import HardInstanceMining  # noqa: F401, E402
from keras_fgvc.losses.imbalance import FocalCrossEntropy  # noqa: F401, E402

__all__ = [
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "CenterLoss",
    "FocalCrossEntropy",
    "HardInstanceMining",
    "KnowledgeDistillationLoss",
    "LabelSmoothingCrossEntropy",
    "MaskedBinaryCrossentropy",
    "MaskedSparseCategoricalCrossentropy",
    "PreLogitNormLoss",
    "apply_loss",
    "build_loss",
    "check_loss",
    "loss_names",
]
