"""Fashion-MNIST for the real-data benchmarks (Debian's dataset-fashion-mnist package), a learnable
stand-in for machines without it (--smoke on CI), and the plain CNN baseline both benchmarks
compare the pipelines with. Not a benchmark itself (the leading underscore keeps it out of the suite).
"""

import gzip
import os
import struct
import time

import keras
import numpy as np
from PIL import Image

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def available() -> bool:
    return os.path.isfile(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz"))


def read_idx(path):
    """A Fashion-MNIST idx file (gzip): uint8 images [N, 28, 28] (magic 2051) or labels [N] (2049)."""
    with gzip.open(path, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        if magic == 2051:
            rows, cols = struct.unpack(">II", f.read(8))
            return np.frombuffer(f.read(), np.uint8).reshape(count, rows, cols)
        if magic == 2049:
            return np.frombuffer(f.read(), np.uint8)
        raise ValueError(f"{path}: not an idx image/label file (magic {magic})")


def fashion_mnist(split):
    prefix = "train" if split == "train" else "t10k"
    return (read_idx(os.path.join(FASHION_MNIST, f"{prefix}-images-idx3-ubyte.gz")),
            read_idx(os.path.join(FASHION_MNIST, f"{prefix}-labels-idx1-ubyte.gz")))


def stand_in(count, rng):
    """Learnable 28 px stand-ins for 10 classes (a bar at one of 5 angles, filled or hollow box
    behind it) for CI machines without the package. Shapes, not photos: wiring only."""
    classes = rng.permutation(np.arange(count) % 10)
    yy, xx = np.mgrid[0:28, 0:28] - 13.5
    images = np.empty((count, 28, 28), np.uint8)
    for i, c in enumerate(classes):
        angle = np.pi * (c % 5) / 5 + rng.normal(0, 0.08)
        bar = np.abs(xx * np.sin(angle) - yy * np.cos(angle)) < 2.5
        box = (np.abs(xx) < 10) & (np.abs(yy) < 10) & ((c < 5) | (np.abs(xx) > 7) | (np.abs(yy) > 7))
        image = 40 * box + 180 * bar + rng.normal(0, 25, (28, 28))
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images, classes


# ------------------------------------------------------------------------------------------ plain CNN
def load_pixels(paths, size):
    return np.stack([np.asarray(Image.open(p).convert("L").resize((size, size), Image.BILINEAR), np.float32)
                     for p in paths])[..., None] / 255.0


def plain_cnn(size, num_classes=2):
    """4 conv + max-pool blocks, global pooling, dropout, softmax: the baseline a user would write."""
    inputs = keras.Input((size, size, 1))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    for filters in (32, 64, 128, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


class BudgetAndBest(keras.callbacks.Callback):
    """Stops after ``budget_s`` of training and restores the weights of the best val_loss epoch."""

    def __init__(self, budget_s):
        super().__init__()
        self.budget_s, self.best, self.weights, self.epochs = budget_s, np.inf, None, 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1
        if logs["val_loss"] < self.best:
            self.best, self.weights = logs["val_loss"], self.model.get_weights()
        if time.perf_counter() - self.start > self.budget_s:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


