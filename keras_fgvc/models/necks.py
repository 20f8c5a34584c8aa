"""Embedding necks: pooled backbone features -> embedding (timm ``forward_head(pre_logits=True)``).

pooling (avg | GeM) -> [optional BatchNorm -> dropout -> Dense embedding -> optional BatchNorm].
The neck returns the raw embedding (what a classifier reads) and its L2-normalised copy
(what retrieval and distillation read).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_fgvc")
class GeMPooling2D(keras.layers.Layer):
    """Generalised-mean pooling (Radenovic et al. 2018): (mean x^p)^(1/p) with a learnable p.

    p = 1 is average pooling and p -> inf approaches max pooling; p starts at 3 as in the paper.

    Example:
        >>> GeMPooling2D()(keras.ops.ones((2, 7, 7, 16))).shape
        (2, 16)
    """

    def __init__(self, p=3.0, eps=1e-6, trainable_p=True, **kwargs):
        super().__init__(**kwargs)
        self.p = p
        self.eps = eps
        self.trainable_p = trainable_p

    def build(self, input_shape):
        self.p_weight = self.add_weight(
            name="p", shape=(), initializer=keras.initializers.Constant(self.p), trainable=self.trainable_p
        )

    def call(self, inputs):
        p = ops.cast(self.p_weight, inputs.dtype)
        pooled = ops.mean(ops.power(ops.maximum(inputs, self.eps), p), axis=(1, 2))
        return ops.power(pooled, 1.0 / p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "p": self.p, "eps": self.eps, "trainable_p": self.trainable_p}


# PyTorch's BatchNorm1d defaults (momentum 0.1 there is 0.9 here), as in our backbones and the
# PyTorch systems we reproduce. Keras' own 0.99 lets the moving statistics lag ten times longer:
# after a short training (Hotel-ID smoke: 32 steps) the stale mean put one common offset on every
# embedding (mean pairwise cosine 0.99) and retrieval ranked near chance.
_BN = dict(momentum=0.9, epsilon=1e-5)


def embedding_neck(features, pooling="avg", embedding_dim=0, dropout=0.0, batchnorm=False, embedding_batchnorm=True):
    """Apply the neck to a symbolic feature tensor; returns ``(embedding, normalized_embedding)``.

    Args:
        features: 4-D feature map or 2-D pre-logits from a backbone.
        pooling: "avg" or "gem" (ignored for 2-D features).
        embedding_dim: 0 keeps the pooled features as the embedding; > 0 adds the Dense embedding.
        dropout: dropout before the embedding Dense (only used when embedding_dim > 0).
        batchnorm: BatchNorm on the pooled features before the dropout (only with embedding_dim > 0).
        embedding_batchnorm: BatchNorm after the embedding Dense; without it the Dense keeps a bias
            (BatchNorm's beta makes a bias redundant, nothing else does).

    Example:
        >>> features = keras.Input((7, 7, 64))
        >>> embedding, normalized = embedding_neck(features, pooling="gem", embedding_dim=128, batchnorm=True)
        >>> normalized.shape
        (None, 128)
    """
    x = features
    if len(x.shape) == 4:
        x = GeMPooling2D(name="gem_pool")(x) if pooling == "gem" else keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if embedding_dim:
        if batchnorm:
            x = keras.layers.BatchNormalization(**_BN, name="neck_bn_in")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="neck_dropout")(x)
        x = keras.layers.Dense(embedding_dim, use_bias=not embedding_batchnorm, name="neck_dense")(x)
        if embedding_batchnorm:
            x = keras.layers.BatchNormalization(**_BN, name="neck_bn")(x)
    embedding = keras.layers.Identity(name="pre_logits")(x)
    normalized = keras.layers.UnitNormalization(axis=-1, name="embedding", dtype="float32")(x)
    return embedding, normalized
