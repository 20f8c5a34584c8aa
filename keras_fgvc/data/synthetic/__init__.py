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


def demo_root(cfg, folder: str, marker: str, generate) -> str:
    """``data.root`` when a config gives one; else the demo folder ``<data.demo_root>/<folder>-seed<seed>``,
    made by ``generate(root)`` unless it holds ``marker`` (the file its generator writes last), so a
    demo is generated once per settings and an interrupted one is made again.

    Example:
        >>> demo_root(cfg, "cars-c20-n800-s128", "cars_annos.mat", lambda root: make("cars", root))  # doctest: +SKIP
        'data/demo/cars-c20-n800-s128-seed0'
    """
    import os

    if cfg.data.root:
        return cfg.data.root
    root = os.path.join(cfg.data.demo_root, f"{folder}-seed{cfg.seed}")
    if not os.path.isfile(os.path.join(root, marker)):
        generate(root)
    return root
