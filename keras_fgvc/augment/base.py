"""Shared machinery for our augmentation layers: batching, dtypes, randomness, per-image dispatch.

Contract (DESIGN.md conventions 4-5): images are NHWC in [0, 255] (float in any dtype, or uint8),
batched or a single HWC image; randomness is sampled once per image; the output has the layer's
compute dtype, stays in [0, 255], and equals the input when ``training=False``. The layers use
TensorFlow ops directly (the project's only backend) so they run unchanged in a model, in
``tf.function`` and in ``tf.data``.
"""

import keras
import tensorflow as tf


class BatchAugmentation(keras.layers.Layer):
    """Base class: subclasses implement ``sample_parameters`` and ``apply_parameters``.

    Splitting sampling from application lets tests inject exact parameters and compare the
    result against a NumPy reference; ``call`` glues the two and applies ``rate``.

    Args:
        rate: probability that an image is augmented at all (per image).
        seed: optional int, makes the layer's random stream reproducible.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    _rate_in_parameters = False

    def __init__(self, rate=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # --- randomness -----------------------------------------------------------------------
    def uniform(self, shape, minval=0.0, maxval=1.0):
        """float32 uniform samples in [minval, maxval) from this layer's seed stream."""
        return keras.random.uniform(shape, minval=minval, maxval=maxval, dtype="float32", seed=self.seed_generator)

    def randint(self, shape, minval, maxval):
        """int32 samples in [minval, maxval)."""
        return keras.random.randint(shape, minval, maxval, dtype="int32", seed=self.seed_generator)

    # --- subclass API ---------------------------------------------------------------------
    def sample_parameters(self, shape):
        """A dict of per-image tensors describing the random transformation for a batch of ``shape``."""
        raise NotImplementedError

    def apply_parameters(self, images, parameters):
        """Apply a transformation to float32 ``images`` [B, H, W, C] given ``parameters``."""
        raise NotImplementedError

    # --- Keras plumbing -------------------------------------------------------------------
    def call(self, images, training=True):
        images = tf.convert_to_tensor(images)
        if not training:
            return tf.cast(images, self.compute_dtype)
        single = images.shape.rank == 3
        x = tf.cast(images[None] if single else images, tf.float32)
        parameters = self.sample_parameters(tf.shape(x))
        same_shape = self.compute_output_shape(x.shape)[1:] == x.shape[1:]
        if self.rate < 1.0 and not self._rate_in_parameters and same_shape:
            # Only the images that drew "apply" are transformed: a 30%-rate warp costs 30% of one.
            applied = self.uniform(tf.shape(x)[:1]) < self.rate
            groups = tf.cast(tf.logical_not(applied), tf.int32)  # 0: augment, 1: keep

            def augment_subset(part, where):
                subset = tf.nest.map_structure(lambda p: tf.gather(p, where), parameters)
                return self.apply_parameters(part, subset)

            y = apply_by_group(x, groups, 2, [augment_subset, None])
        else:
            y = self.apply_parameters(x, parameters)
        y = tf.clip_by_value(y, 0.0, 255.0)
        # Keep static H, W, C known (warps lose them) so later layers in a tf.data graph can use them.
        y = tf.ensure_shape(y, self.compute_output_shape(x.shape))
        y = tf.cast(y, self.compute_dtype)
        return y[0] if single else y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def apply_by_group(images, groups, num_groups, functions):
    """Run ``functions[g]`` only on the images whose group id is ``g`` and stitch the results back.

    This is what keeps RandAugment/AutoAugment/OneOf cheap: each image pays for its own ops only,
    instead of computing every op on every image and selecting afterwards. Empty groups are
    skipped with ``tf.cond`` so a rarely chosen op costs nothing.

    Args:
        images: [B, H, W, C] tensor (or any tensor with a leading batch axis).
        groups: int32 [B], the group id of each image, in [0, num_groups).
        num_groups: python int.
        functions: ``num_groups`` callables ``f(subset, positions) -> subset``; ``positions`` are the
            indices of the subset in the batch so a function can gather per-image parameters.
    """
    positions = tf.range(tf.shape(groups)[0])
    image_parts = tf.dynamic_partition(images, groups, num_groups)
    position_parts = tf.dynamic_partition(positions, groups, num_groups)
    outputs = []
    for function, part, where in zip(functions, image_parts, position_parts):
        if function is None:
            outputs.append(part)
            continue
        outputs.append(
            tf.cond(
                tf.size(where) > 0,
                lambda function=function, part=part, where=where: tf.cast(function(part, where), part.dtype),
                lambda part=part: part,
            )
        )
    stitched = tf.dynamic_stitch(position_parts, outputs)
    return tf.ensure_shape(stitched, images.shape)


def box_mask(height, width, top, left, box_height, box_width):
    """Boolean [B, H, W] mask of per-image boxes (any number per image: pass [B, K] tensors).

    Rows ``top <= y < top + box_height`` and columns ``left <= x < left + box_width`` are True.
    """
    top, left, box_height, box_width = (tf.cast(t, tf.int32) for t in (top, left, box_height, box_width))
    if top.shape.rank == 1:
        top, left, box_height, box_width = (t[:, None] for t in (top, left, box_height, box_width))
    rows = tf.range(height)[None, None, :]
    cols = tf.range(width)[None, None, :]
    inside_rows = tf.cast((rows >= top[..., None]) & (rows < (top + box_height)[..., None]), tf.float32)
    inside_cols = tf.cast((cols >= left[..., None]) & (cols < (left + box_width)[..., None]), tf.float32)
    # [B, K, H]^T @ [B, K, W] counts the boxes covering each pixel: one small matmul instead of a
    # [B, K, H, W] boolean tensor.
    return tf.matmul(inside_rows, inside_cols, transpose_a=True) > 0.5


def paint(images, mask, fill_value):
    """Set pixels where ``mask`` [B, H, W] is True to ``fill_value`` (a number or a per-channel colour).

    A lerp with a 0/1 weight: measured here about 2x faster than ``tf.where`` with a broadcast colour.
    """
    weight = tf.cast(mask, images.dtype)[..., None]
    return images + weight * (fill_colour(fill_value, images.shape[-1]) - images)


def fill_colour(fill_value, channels):
    """A float32 [C] colour from a scalar or a per-channel sequence."""
    colour = tf.constant(fill_value, tf.float32)
    return tf.broadcast_to(colour, [channels]) if colour.shape.rank == 0 else colour[:channels]
