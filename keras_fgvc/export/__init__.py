"""Exports: SavedModel with encoded-bytes signatures, TFLite float32/int8, model cards, submission CSVs."""

from keras_fgvc.export.model_card import format_model_card, model_card  # noqa: F401
from keras_fgvc.export.retrieval_model import export_retrieval_model  # noqa: F401
from keras_fgvc.export.saved_model import export_saved_model  # noqa: F401
from keras_fgvc.export.submission import (  # noqa: F401
    write_fivek_predictions,
    write_hotel_id_submission,
    write_predictions_csv,
)
from keras_fgvc.export.tflite import compare_with_keras, export_tflite, tflite_predict  # noqa: F401
