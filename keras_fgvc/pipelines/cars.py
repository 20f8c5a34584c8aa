"""GhostNet on Stanford Cars from scratch (SYSTEMS.md section 2; seed 001, the thesis).

The recipe and every ablation are ``pipelines/cars.yaml`` values, each one override; the flow is
the shared single-label classifier (``pipelines/classifier.py``). What is Cars-specific lives
here: its options group and the demo data set.
"""

from dataclasses import dataclass

from keras_fgvc.config.schema import register_pipeline_options
from keras_fgvc.data import synthetic
from keras_fgvc.pipelines import classifier


@dataclass
class CarsConfig:
    # Label-smoothing epsilon of the stage's cross-entropy (thesis: LS-CE); 0 is plain CE, the
    # thesis' CE ablation. cars.yaml's loss reads it: losses.logits.0.kwargs.epsilon.
    label_smoothing: float = 0.1
    # Demo data: data.demo.num_images split over this many classes, half of each class in test.
    demo_classes: int = 20


register_pipeline_options("cars", "cars", CarsConfig)


def data_root(cfg) -> str:
    """``data.root``, or the demo Stanford Cars layout (generated on first use) for these settings."""
    demo, classes = cfg.data.demo, cfg.cars.demo_classes
    return synthetic.demo_root(
        cfg, f"cars-c{classes}-n{demo.num_images}-s{demo.image_size}", "cars_annos.mat",
        lambda root: synthetic.make("cars", root, seed=cfg.seed, num_classes=classes,
                                    images_per_class=max(2, demo.num_images // classes), image_size=demo.image_size))


def run(cfg) -> dict:
    return classifier.run(cfg, data_root(cfg))
