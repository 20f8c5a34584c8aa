"""``task=model_card``: build the pipeline's model from its config and print its model card
(parameters, MACs, float32 size, measured images/s at batch 1 and 32 on this machine)."""

from keras_fgvc.export.model_card import format_model_card, model_card
from keras_fgvc.models import build_model

# Classes of each pipeline's head when no data set is read (the card does not need data).
NUM_CLASSES = {"fivek": 2, "cars": 196, "hotel_id": 3116}  # Hotel-ID 2022: 3,116 hotels


def run(cfg) -> dict:
    from keras_fgvc.training.precision import configure

    configure(cfg.runtime)
    model = build_model(cfg, NUM_CLASSES.get(cfg.pipeline, 2))
    size = cfg.data.image_size
    card = model_card(model, (size, size), batch_sizes=(1, 32))
    print(format_model_card(card))
    return card
