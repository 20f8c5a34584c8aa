"""``model.input_scale=dataset``: standardise with the training split's own per-channel mean/std.

The thesis' best Cars recipe normalises with statistics measured on its training images
([0.4707, 0.4602, 0.4550] / [0.2594, 0.2585, 0.2635]) rather than ImageNet's. ``data.stats``
measures them on the pixels the model sees and caches them; this puts them into the config the
model is built from, so ``config.yaml`` records the values a run used.
"""

import dataclasses

from keras_fgvc.data.stats import mean_std


def with_dataset_statistics(cfg, train_rows):
    """``cfg`` with ``model.mean``/``model.std`` measured on ``train_rows`` when
    ``model.input_scale`` is ``dataset``; ``cfg`` itself otherwise.

    Only training rows: statistics of validation or test images would leak them into the model.

    Example:
        >>> cfg = with_dataset_statistics(cfg, train_rows)  # doctest: +SKIP
        >>> cfg.model.mean  # e.g. [0.4707, 0.4602, 0.4550] on Stanford Cars at 227 px  # doctest: +SKIP
    """
    if cfg.model.input_scale != "dataset":
        return cfg
    from keras_fgvc.data.checks import default_cache_dir

    mean, std = mean_std(train_rows, cfg.data.image_size, cfg.model.img_channels,
                         cache_dir=cfg.data.cache_dir or default_cache_dir(), resize=cfg.data.resize,
                         box_mode=cfg.data.box_mode)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, mean=[float(m) for m in mean],
                                                                std=[float(s) for s in std]))
