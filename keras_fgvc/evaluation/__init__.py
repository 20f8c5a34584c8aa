"""Evaluation: metrics (top-k, F1, MAP@k), retrieval ranking, ensembles and test-time augmentation."""

from keras_fgvc.evaluation.metrics import (
    MeanAveragePrecisionAtK,
    SparseF1Score,
    accuracy,
    confusion_matrix,
    f1_from_confusion,
    f1_score,
    map_at_k,
    per_class_accuracy,
    top_k_accuracy,
)
