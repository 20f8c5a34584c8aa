"""Label-mixing CutMix / MixUp applied per batch with probability ``rate``.

Keras core ``CutMix``/``MixUp`` draw the boxes, weights and partner permutation; these wrappers add
the per-batch probability (VIPriors: CutMix with p = 0.5, as in Yun et al. 2019's reference code)
and a second label contract for margin heads (ArcFace/CosFace need integer labels, not soft targets).

Contract (inputs are dicts, run them in tf.data on batches: they cannot see labels inside a model):
    input:  {"images": [B, H, W, C] in [0, 255], "labels": ..., other keys passed through}
    label_mode="one_hot": "labels" are one-hot/soft [B, K]; output "labels" = lam * y + (1 - lam) * y[perm].
    label_mode="pair": "labels" are integer ids [B]; output replaces "labels" with
        "labels_a" (the image's own ids), "labels_b" (the partner's ids, ``labels[perm]``) and
        "lam" (float32 [B], the weight of labels_a), so a margin loss can use
        lam * loss(logits, labels_a) + (1 - lam) * loss(logits, labels_b).
    When the batch is not mixed (probability 1 - rate) lam = 1 and labels_b = labels_a.
"""

import keras
import tensorflow as tf

from keras_fgvc.augment.tf_ops_layer import TensorFlowOpsLayer

_LABEL_MODES = ("one_hot", "pair")


class _LabelMixing(TensorFlowOpsLayer):
    """Shared plumbing; subclasses define the core sampler and how two images blend."""

    mixes_labels = True  # presets.split_label_mixing keeps these steps out of image-only stacks

    def __init__(self, alpha, rate, label_mode, seed, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if label_mode not in _LABEL_MODES:
            raise ValueError(f"label_mode must be one of {_LABEL_MODES}, got {label_mode!r}")
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        self.alpha = float(alpha)
        self.rate = float(rate)
        self.label_mode = label_mode

    def build(self, input_shape=None):
        # The core sampler has no weights of its own; building it keeps Keras from warning.
        self._sampler.build(input_shape.get("images") if isinstance(input_shape, dict) else input_shape)

    def _sample_core(self, images):
        raise NotImplementedError

    def _blend(self, images, partners, parameters):
        raise NotImplementedError

    def sample_parameters(self, images):
        """{"permutation": int32 [B], "lam": float32 [B], "applied": bool scalar, ...}."""
        parameters = self._sample_core(images)
        applied = self.uniform(()) < self.rate
        parameters["applied"] = applied
        parameters["lam"] = tf.where(applied, tf.reshape(tf.cast(parameters["lam"], tf.float32), [-1]), 1.0)
        return parameters

    def apply_parameters(self, data, parameters):
        out = dict(data)
        images = tf.cast(data["images"], tf.float32)
        permutation = parameters["permutation"]
        mixed = self._blend(images, tf.gather(images, permutation), parameters)
        out["images"] = tf.cast(tf.where(parameters["applied"], mixed, images), self.compute_dtype)
        labels = data["labels"]
        partner_labels = tf.where(parameters["applied"], tf.gather(labels, permutation), labels)
        lam = parameters["lam"]
        if self.label_mode == "one_hot":
            labels = tf.cast(labels, tf.float32)
            out["labels"] = lam[:, None] * labels + (1.0 - lam[:, None]) * tf.cast(partner_labels, tf.float32)
        else:
            del out["labels"]
            out.update(labels_a=labels, labels_b=partner_labels, lam=lam)
        return out

    def call(self, data, training=True):
        if not isinstance(data, dict) or "images" not in data or "labels" not in data:
            raise TypeError(f"{type(self).__name__} mixes labels too: call it on {{'images': ..., 'labels': ...}} "
                            "batches in tf.data (see presets.split_label_mixing), not on bare images")
        if not training:
            return dict(data)
        return self.apply_parameters(data, self.sample_parameters(tf.convert_to_tensor(data["images"])))

    def compute_output_spec(self, data, training=True):
        out = dict(data)
        out["images"] = keras.KerasTensor(data["images"].shape, dtype=self.compute_dtype)
        if self.label_mode == "pair":
            labels = out.pop("labels")
            out.update(labels_a=labels, labels_b=labels, lam=keras.KerasTensor(labels.shape[:1], dtype="float32"))
        else:
            out["labels"] = keras.KerasTensor(data["labels"].shape, dtype="float32")
        return out

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "rate": self.rate, "label_mode": self.label_mode,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_fgvc")
class BatchCutMix(_LabelMixing):
    """CutMix (Yun et al., ICCV 2019): paste a box from a partner image; lam = kept area fraction.

    Args:
        alpha: Beta(alpha, alpha) parameter of the box area (1.0 in the paper; Keras core caps it at 1).
        rate: probability that a batch is mixed.
        label_mode: "one_hot" or "pair" (see the module docstring for the output contract).
        seed, **kwargs: forwarded.

    Example:
        >>> cutmix = BatchCutMix(rate=0.5)
        >>> ds = ds.map(lambda x, y: (lambda d: (d["images"], d["labels"]))(
        ...     cutmix({"images": x, "labels": tf.one_hot(y, num_classes)})))
    """

    def __init__(self, alpha=1.0, rate=0.5, label_mode="one_hot", seed=None, **kwargs):
        super().__init__(alpha=alpha, rate=rate, label_mode=label_mode, seed=seed, **kwargs)
        self._sampler = keras.layers.CutMix(factor=(self.alpha, self.alpha), seed=seed, dtype="float32")

    def _sample_core(self, images):
        core = self.call_keras_data_layer(self._sampler, "get_random_transformation", {"images": images},
                                          training=True)
        mask = tf.reduce_any(core["batch_masks"], axis=-1)
        # Keras derives the weight from the fractional box; the pasted pixels are a whole-pixel box, so
        # the label weight is recomputed from the mask (as CutMix's reference code does).
        lam = 1.0 - tf.reduce_mean(tf.cast(mask, tf.float32), axis=[1, 2])
        return {"permutation": core["permutation_order"], "lam": lam, "mask": mask}

    def _blend(self, images, partners, parameters):
        return tf.where(parameters["mask"][..., None], partners, images)


@keras.saving.register_keras_serializable(package="keras_fgvc")
class BatchMixUp(_LabelMixing):
    """MixUp (Zhang et al., ICLR 2018): ``lam * x + (1 - lam) * x[perm]`` with lam ~ Beta(alpha, alpha).

    Args:
        alpha: Beta parameter (0.2 is the Keras and paper ImageNet default).
        rate: probability that a batch is mixed.
        label_mode: "one_hot" or "pair" (see the module docstring).
        seed, **kwargs: forwarded.

    Example:
        >>> mixup = BatchMixUp(alpha=0.2, rate=1.0, label_mode="pair")
    """

    def __init__(self, alpha=0.2, rate=1.0, label_mode="one_hot", seed=None, **kwargs):
        super().__init__(alpha=alpha, rate=rate, label_mode=label_mode, seed=seed, **kwargs)
        self._sampler = keras.layers.MixUp(alpha=self.alpha, seed=seed, dtype="float32")

    def _sample_core(self, images):
        core = self.call_keras_data_layer(self._sampler, "get_random_transformation", {"images": images},
                                          training=True)
        return {"permutation": core["permutation_order"], "lam": core["mix_weight"]}

    def _blend(self, images, partners, parameters):
        lam = tf.reshape(parameters["lam"], [-1, 1, 1, 1])
        return lam * images + (1.0 - lam) * partners
