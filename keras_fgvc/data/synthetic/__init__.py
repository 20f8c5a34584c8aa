"""Built-in demo data sets that carry their labels visually (and keep the hidden truth)."""

import importlib

GENERATORS = {
    "fivek": "keras_fgvc.data.synthetic.fivek",
    "hotel_id": "keras_fgvc.data.synthetic.hotel_id",
    "cars": "keras_fgvc.data.synthetic.cars",
    "imagenet_subset": "keras_fgvc.data.synthetic.imagenet_subset",
}


def make(name: str, root: str, seed: int = 0, **kwargs) -> str:
    """Write demo data set ``name`` under ``root``; returns the main table's path.

    Example:
        >>> make("fivek", "/tmp/fivek_demo", seed=0, num_images=64)  # doctest: +SKIP
    """
    if name not in GENERATORS:
        raise KeyError(f"no demo data for '{name}'; available: {', '.join(sorted(GENERATORS))}")
    return importlib.import_module(GENERATORS[name]).make(root, seed=seed, **kwargs)
