"""EfficientNetV2 (Tan & Le 2021) through keras.applications: B0-B3, S, M, L.

The applications include their own preprocessing (rescale + normalise), so the registry entry
takes raw [0, 255] pixels. Weights: None (random init) or a local weights file of the no-top
model; this project never downloads weights at run time.
"""

import os

import keras

from keras_fgvc.models.registry import register_backbone

# registry name -> keras.applications constructor name
VARIANTS = {
    "efficientnetv2_b0": "EfficientNetV2B0",
    "efficientnetv2_b1": "EfficientNetV2B1",
    "efficientnetv2_b2": "EfficientNetV2B2",
    "efficientnetv2_b3": "EfficientNetV2B3",
    "efficientnetv2_s": "EfficientNetV2S",
    "efficientnetv2_m": "EfficientNetV2M",
    "efficientnetv2_l": "EfficientNetV2L",
}


def _register(name, constructor_name):
    @register_backbone(name, input_scale="raw")
    def build(input_shape, weights=None):
        """Last feature map (stride 32) of the variant's keras.applications model, preprocessing inside.

        Args:
            input_shape: ``(height, width, channels)``.
            weights: None for random init or the path of a local no-top weights file (never a
                download: "imagenet" is refused).
        """
        if weights is not None and not os.path.isfile(weights):
            raise FileNotFoundError(f"{constructor_name} weights file not found: {weights} (nothing is downloaded)")
        constructor = getattr(keras.applications, constructor_name)
        return constructor(
            include_top=False,
            weights=weights,
            input_shape=tuple(input_shape),
            include_preprocessing=True,
        )

    build.__name__ = f"build_{name}"
    return build


for _name, _constructor in VARIANTS.items():
    _register(_name, _constructor)
