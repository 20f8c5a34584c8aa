"""Evaluation: metrics (top-k, F1, MAP@k), retrieval ranking and re-ranking, ensembles and test-time augmentation."""

from keras_fgvc.evaluation.ensemble import average_probabilities, ensemble_rank_classes, weighted_concat
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
from keras_fgvc.evaluation.reranking import alpha_query_expansion, database_side_augmentation
from keras_fgvc.evaluation.retrieval import (
    PAD_LABEL,
    extract_embeddings,
    l2_normalize,
    load_embeddings,
    rank_classes,
)
from keras_fgvc.evaluation.tta import TTA_PRESETS, apply_view, make_views, predict_tta
