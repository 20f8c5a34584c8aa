"""Batched, vectorised RandAugment and AutoAugment.

Keras core ``RandAugment`` evaluates every op on every image and selects afterwards (about 23 img/s
at 224 px inside tf.data on CPU). Here each image draws its own ops, the batch is partitioned by
op id and every op runs once on just the images that chose it (``base.apply_by_group``).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.augment import ops
from keras_fgvc.augment.base import BatchAugmentation, apply_by_group

OP_NAMES = tuple(ops.OPS)
# RandAugment's 14 transformations (Cubuk et al., "RandAugment", CVPR-W 2020, section 3).
RANDAUGMENT_OPS = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")

# The ImageNet policy found by AutoAugment (Cubuk et al., CVPR 2019, Appendix Table 9): 24
# sub-policies of two (op, probability, magnitude level 0..9) steps; one sub-policy is drawn per image.
AUTOAUGMENT_POLICIES = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
        (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
        (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
        (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
        (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
        (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
        (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    ),
}
# AutoAugment discretises magnitudes into 10 levels spanning each op's range.
AUTOAUGMENT_MAX_LEVEL = 9


INTERPOLATIONS = ("nearest", "bilinear")


def apply_op_sequence(images, op_ids, magnitudes, signs, interpolation="nearest"):
    """Apply step after step; at each step image i runs ``OP_NAMES[op_ids[i, step]]``.

    Args:
        images: float32 [B, H, W, C] in [0, 255].
        op_ids: int32 [B, S], indices into ``OP_NAMES``.
        magnitudes: float32 [B, S], normalised magnitudes in [0, 1].
        signs: float32 [B, S], +1/-1 direction for signed ops (rotate, shear, translate).
        interpolation: resampling of the geometric ops, "nearest" (the reference default) or "bilinear".
    """
    identity_id = OP_NAMES.index("Identity")
    options = {name: {"interpolation": interpolation.upper()} if name in ops.GEOMETRIC_OPS else {}
               for name in OP_NAMES}
    for step in range(op_ids.shape[1]):
        t, sign = magnitudes[:, step], signs[:, step]
        functions = [
            None if k == identity_id else
            (lambda part, where, op=ops.OPS[name], options=options[name]:
             op(part, tf.gather(t, where), tf.gather(sign, where), **options))
            for k, name in enumerate(OP_NAMES)
        ]
        images = apply_by_group(images, op_ids[:, step], len(OP_NAMES), functions)
    return images


class _OpSequence(BatchAugmentation):
    """Shared ``apply_parameters``: parameters are {"op_ids", "magnitudes", "signs"}, all [B, S]."""

    def __init__(self, interpolation="nearest", rate=1.0, seed=None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation

    def _random_signs(self, shape):
        return tf.where(self.uniform(shape) < 0.5, -1.0, 1.0)

    def apply_parameters(self, images, parameters):
        return apply_op_sequence(images, parameters["op_ids"], parameters["magnitudes"], parameters["signs"],
                                 self.interpolation)

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="keras_fgvc")
class RandAugment(_OpSequence):
    """RandAugment: each image gets ``num_ops`` ops drawn uniformly, all at ``magnitude``.

    Args:
        num_ops: ops applied in sequence per image (N in the paper).
        magnitude: strength on the paper's 0..``max_magnitude`` scale (M in the paper).
        max_magnitude: the top of the magnitude scale (10, as in the reference code).
        op_names: the op pool (default: the paper's 14 ops).
        interpolation: resampling of rotate/shear/translate: "nearest" (the reference code's and
            torchvision's default) or "bilinear".
        rate, seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = RandAugment(num_ops=2, magnitude=9)
        >>> ds = ds.map(lambda x, y: (layer(x, training=True), y))
    """

    def __init__(self, num_ops=2, magnitude=9.0, max_magnitude=10.0, op_names=RANDAUGMENT_OPS, interpolation="nearest",
                 rate=1.0, seed=None, **kwargs):
        super().__init__(interpolation=interpolation, rate=rate, seed=seed, **kwargs)
        unknown = set(op_names) - set(OP_NAMES)
        if unknown:
            raise ValueError(f"unknown RandAugment ops {sorted(unknown)}; known: {OP_NAMES}")
        if not 0 <= magnitude <= max_magnitude:
            raise ValueError(f"magnitude must be in [0, {max_magnitude}], got {magnitude}")
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.max_magnitude = float(max_magnitude)
        self.op_names = tuple(op_names)

    def sample_parameters(self, shape):
        batch = shape[0]
        pool = tf.constant([OP_NAMES.index(name) for name in self.op_names], tf.int32)
        op_ids = tf.gather(pool, self.randint([batch, self.num_ops], 0, len(self.op_names)))
        magnitudes = tf.fill([batch, self.num_ops], self.magnitude / self.max_magnitude)
        return {"op_ids": op_ids, "magnitudes": magnitudes, "signs": self._random_signs([batch, self.num_ops])}

    def get_config(self):
        return {**super().get_config(), "num_ops": self.num_ops, "magnitude": self.magnitude,
                "max_magnitude": self.max_magnitude, "op_names": list(self.op_names)}


@keras.saving.register_keras_serializable(package="keras_fgvc")
class AutoAugment(_OpSequence):
    """AutoAugment: each image draws one sub-policy; each of its two ops fires with its probability.

    Args:
        policy: a key of ``AUTOAUGMENT_POLICIES`` (``"imagenet"``, the 24 sub-policies of Cubuk et al. 2019).
        interpolation: resampling of rotate/shear/translate, "nearest" (default) or "bilinear".
        rate, seed, **kwargs: see ``BatchAugmentation``.

    Example:
        >>> layer = AutoAugment(policy="imagenet")
        >>> augmented = layer(images, training=True)  # images: float [B, H, W, 3] in [0, 255]
    """

    def __init__(self, policy="imagenet", interpolation="nearest", rate=1.0, seed=None, **kwargs):
        super().__init__(interpolation=interpolation, rate=rate, seed=seed, **kwargs)
        if policy not in AUTOAUGMENT_POLICIES:
            raise ValueError(f"unknown AutoAugment policy {policy!r}; known: {sorted(AUTOAUGMENT_POLICIES)}")
        self.policy = policy
        table = AUTOAUGMENT_POLICIES[policy]
        # NumPy tables: constants in whichever graph (model, tf.function, tf.data) calls the layer.
        self._ops = np.array([[OP_NAMES.index(op) for op, _, _ in sub] for sub in table], np.int32)
        self._probabilities = np.array([[p for _, p, _ in sub] for sub in table], np.float32)
        self._magnitudes = np.array([[m / AUTOAUGMENT_MAX_LEVEL for _, _, m in sub] for sub in table], np.float32)

    def sample_parameters(self, shape):
        batch = shape[0]
        steps = self._ops.shape[1]
        chosen = self.randint([batch], 0, self._ops.shape[0])
        fires = self.uniform([batch, steps]) < tf.gather(self._probabilities, chosen)
        op_ids = tf.where(fires, tf.gather(self._ops, chosen), OP_NAMES.index("Identity"))
        return {"op_ids": op_ids, "magnitudes": tf.gather(self._magnitudes, chosen),
                "signs": self._random_signs([batch, steps]), "sub_policy": chosen}

    def get_config(self):
        return {**super().get_config(), "policy": self.policy}
