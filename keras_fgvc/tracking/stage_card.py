"""The model card of a trained stage (``export/model_card.py``: parameters, MACs, images/s), measured
from the run folder alone for the run report and kept in ``<stage>/model_card.json``.

The stage's model is rebuilt from ``<stage>/config.yaml`` (the stage's resolved config) with the
classes its ``finished.json`` records, and checked against ``best.weights.h5`` array by array
(shapes; the values do not change MACs or speed, and reading them would cost more than the card).
The report is written at the end of every run, so the timing is short: batch 1 for
``TIMED_SECONDS`` after the warm-up. A card is measured again only when the best weights changed.
"""

import collections
import json
import os

import yaml

from keras_fgvc.tracking.run_dir import read_json, write_json

CARD_FILE = "model_card.json"
BEST = "best.weights.h5"  # training/callbacks.BEST, named here so reading a card needs no Keras import
TIMED_BATCH = 1
TIMED_SECONDS = 0.25


class NotMeasured(Exception):
    """Why a stage's model cannot be rebuilt from its folder (shown in the report as the reason)."""


def _weights_stamp(path: str) -> dict:
    status = os.stat(path)
    return {"bytes": status.st_size, "mtime_ns": status.st_mtime_ns}


def _stored_shapes(weights_path: str) -> collections.Counter:
    import h5py

    shapes = collections.Counter()
    with h5py.File(weights_path, "r") as f:
        f.visititems(lambda _, item: shapes.update([tuple(item.shape)]) if isinstance(item, h5py.Dataset) else None)
    return shapes


def rebuild(stage_dir: str):
    """``(model, config)``: the stage's inference model at its config, unweighted, after checking
    that its arrays have the shapes of the stage's ``best.weights.h5``.

    Raises:
        NotMeasured: the folder lacks what the rebuild needs, the backbone is a TF-Hub module, or
            the rebuilt model does not match the weights file.
    """
    config_path = os.path.join(stage_dir, "config.yaml")
    if not os.path.isfile(config_path):
        raise NotMeasured("no config.yaml in the stage folder")
    with open(config_path) as f:
        tree = yaml.safe_load(f) or {}
    model_tree = tree.get("model") or {}
    if model_tree.get("backbone") == "hub":
        raise NotMeasured(f"TF-Hub backbone ({model_tree.get('hub_handle')}): the report does not load the "
                          "module again; task=model_card measures it")
    finished = os.path.join(stage_dir, "finished.json")
    if not os.path.isfile(finished):
        raise NotMeasured("no finished.json: the stage did not finish")
    num_classes = (read_json(finished).get("info") or {}).get("num_classes")
    if num_classes is None:
        raise NotMeasured("finished.json records no num_classes (the stage was trained by an earlier keras_fgvc)")
    from keras_fgvc.config.validate import to_config
    from keras_fgvc.models import build_model

    # Its best weights replace the backbone's starting weights, a file that may have moved since;
    # "stage" only chose what that command ran, and a recipe's "<stage>_head" phase is no stage name.
    tree.update(model={**model_tree, "weights": None}, stage="all")
    cfg = to_config(tree, source=config_path)
    model = build_model(cfg, int(num_classes))
    built = collections.Counter(tuple(int(d) for d in w.shape) for w in model.weights)
    stored = _stored_shapes(os.path.join(stage_dir, BEST))
    if built != stored:
        missing, extra = sorted((stored - built).elements()), sorted((built - stored).elements())
        raise NotMeasured(f"the model rebuilt from config.yaml does not match {BEST} (weights file has "
                          f"{missing[:3]}, model has {extra[:3]})")
    return model, cfg


def stage_card(run_dir: str, stage: str) -> dict:
    """The card of ``run_dir/stage``: ``{"card": model_card dict, "policy", "weights"}`` (measured now
    and written to ``<stage>/model_card.json``, or read from there when the best weights are the
    ones it measured), else ``{"not_measured": reason}``.

    Example:
        >>> stage_card("runs/cars/smoke", "train")["card"]["macs"]  # doctest: +SKIP
        1347288
    """
    folder = os.path.join(run_dir, stage)
    weights = os.path.join(folder, BEST)
    if not os.path.isfile(weights):
        return {"not_measured": f"no {BEST} in the stage folder"}
    stamp = _weights_stamp(weights)
    card_path = os.path.join(folder, CARD_FILE)
    try:
        kept = read_json(card_path) if os.path.isfile(card_path) else {}
    except ValueError:  # not JSON (edited by hand?): measured again and replaced
        kept = {}
    if kept.get("weights") == stamp and "card" in kept:
        return kept
    try:
        model, cfg = rebuild(folder)
        import keras

        from keras_fgvc.export.model_card import model_card

        size = cfg.data.image_size
        card = model_card(model, (size, size), batch_sizes=(TIMED_BATCH,), min_seconds=TIMED_SECONDS)
        policy = keras.config.dtype_policy().name
    except NotMeasured as reason:
        return {"not_measured": str(reason)}
    except Exception as error:  # noqa: BLE001 - a report shows why, it does not end the run that just trained
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        return {"not_measured": f"rebuilding the model failed: {type(error).__name__}: {first_line}"}
    # Through JSON once, so a fresh card and a kept one look alike (string batch keys, lists).
    record = json.loads(json.dumps({"weights": stamp, "policy": policy, "card": card}))
    write_json(card_path, record)
    return record
