"""Exports: SavedModel with encoded-bytes signatures, model cards, submission/prediction CSVs."""

from keras_fgvc.export.model_card import format_model_card, model_card  # noqa: F401
from keras_fgvc.export.saved_model import export_saved_model  # noqa: F401
from keras_fgvc.export.submission import (  # noqa: F401
    write_fivek_predictions,
    write_hotel_id_submission,
    write_predictions_csv,
)
