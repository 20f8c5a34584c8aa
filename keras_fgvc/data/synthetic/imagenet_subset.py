"""A VIPriors-style demo: a small "ImageNet subset" of textured objects, 50 images per class and split.

A class is one object shape (circle, square, triangle, diamond, cross, star) filled with one texture
(stripes, checks, dots, rings, zigzag). Colours, texture scale and phase, size, position, a slight
rotation and a cluttered background are drawn per image, so no colour or pixel position gives the
class away: a model has to see shape and texture, as with ImageNet objects. Class ids are made-up
WordNet-style ids (``n0xxxxxxx``), fixed for every seed.

    root/train/<wnid>/<wnid>_<n>.JPEG       images_per_split per class
    root/val/<wnid>/<wnid>_<n>.JPEG         images_per_split per class (VIPriors takes val from ImageNet train)
    root/test/ILSVRC2012_val_<n>.JPEG       images_per_split per class, flat, in shuffled order
    root/test_truth.csv                     image_id,wnid of the test images, for the demo only
"""

import itertools
import os

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
TEXTURES = ("stripes", "checks", "dots", "rings", "zigzag")
# Every shape-texture pair is a possible class.
COMBINATIONS = list(itertools.product(range(len(SHAPES)), range(len(TEXTURES))))


def wnids(num_classes: int) -> list[str]:
    """``num_classes`` sorted, distinct, made-up WordNet ids such as ``n01440764``; the same for every seed."""
    if not 2 <= num_classes <= len(COMBINATIONS):
        raise ValueError(f"num_classes must be 2..{len(COMBINATIONS)} (shape-texture pairs); got {num_classes}")
    # WordNet noun offsets are 8 digits; ImageNet's 1,000 classes fall in about 1.4M..15.1M.
    offsets = np.random.default_rng(1000).choice(np.arange(1_440_000, 15_100_000), num_classes, replace=False)
    return [f"n{offset:08d}" for offset in sorted(offsets)]


def class_looks(num_classes: int) -> list[tuple[int, int]]:
    """(shape, texture) of classes 0..num_classes-1: a fixed permutation, so 20 classes use every shape and texture."""
    order = np.random.default_rng(2012).permutation(len(COMBINATIONS))[:num_classes]
    return [COMBINATIONS[i] for i in order]


def make(root, seed=0, num_classes=20, images_per_split=50, image_size=64):
    """Writes ``train/``, ``val/``, ``test/`` and ``test_truth.csv`` under ``root``.

    Args:
        root: output folder (created).
        seed: makes the data set reproducible (same seed, same bytes).
        num_classes: number of classes, 2..30.
        images_per_split: images of each class in each of train, val and test (VIPriors: 50).
        image_size: side of the square JPEGs.
    Returns:
        ``root``, the folder ``data.sources.imagenet_subset.load`` reads.

    Example:
        >>> make("/tmp/vipriors", seed=0, num_classes=20, images_per_split=10)  # doctest: +SKIP
        '/tmp/vipriors'
    """
    rng = np.random.default_rng(seed)
    ids = wnids(num_classes)
    looks = class_looks(num_classes)
    for split, first in (("train", 1), ("val", images_per_split + 1)):
        for wnid, look in zip(ids, looks):
            folder = os.path.join(root, split, wnid)
            os.makedirs(folder, exist_ok=True)
            for n in range(first, first + images_per_split):
                _save(draw_example(rng, image_size, *look), os.path.join(folder, f"{wnid}_{n}.JPEG"), rng)
    os.makedirs(os.path.join(root, "test"), exist_ok=True)
    # Shuffled, so a test file's number says nothing about its class.
    labels = rng.permutation(np.repeat(np.arange(num_classes), images_per_split))
    truth = []
    for n, label in enumerate(labels, start=1):
        image_id = f"ILSVRC2012_val_{n:08d}.JPEG"
        _save(draw_example(rng, image_size, *looks[label]), os.path.join(root, "test", image_id), rng)
        truth.append((image_id, ids[label]))
    pd.DataFrame(truth, columns=["image_id", "wnid"]).to_csv(os.path.join(root, "test_truth.csv"), index=False)
    return root


def _save(image, path, rng):
    image.save(path, format="JPEG", quality=int(rng.integers(80, 96)))


def draw_example(rng, size, shape, texture):
    """One picture of class (``shape``, ``texture``) on clutter."""
    image = Image.new("RGB", (size, size))
    _background(image, rng)
    side = int(rng.uniform(0.4, 0.8) * size)
    mask = shape_mask(shape, side, angle=rng.uniform(-0.35, 0.35))
    pattern = texture_pattern(rng, texture, side)
    fill, ink = _contrasting_colours(rng)
    patch = np.where(pattern[..., None], ink, fill).astype(np.uint8)
    left, top = (int(v) for v in rng.integers(0, size - side + 1, 2))
    image.paste(Image.fromarray(patch), (left, top), Image.fromarray(mask.astype(np.uint8) * 255))
    return image


def _grid(side, angle=0.0):
    """Pixel-centre coordinates u (right), v (down) in [-1, 1], rotated by ``angle`` radians."""
    axis = (np.arange(side) + 0.5) / side * 2 - 1
    v, u = np.meshgrid(axis, axis, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * u + sin * v, -sin * u + cos * v


def shape_mask(shape, side, angle=0.0):
    """Boolean ``side`` x ``side`` mask of shape index ``shape`` (see SHAPES), rotated by ``angle``."""
    u, v = _grid(side, angle)
    name = SHAPES[shape]
    if name == "circle":
        return u**2 + v**2 < 0.85**2
    if name == "square":
        return np.maximum(abs(u), abs(v)) < 0.68
    if name == "triangle":  # apex up
        return (v < 0.7) & (abs(u) < 0.55 * (v + 0.85))
    if name == "diamond":
        return abs(u) + abs(v) < 0.9
    if name == "cross":
        return (np.minimum(abs(u), abs(v)) < 0.28) & (np.maximum(abs(u), abs(v)) < 0.9)
    radius, theta = np.hypot(u, v), np.arctan2(v, u)
    return radius < 0.5 + 0.4 * np.cos(5 * theta + np.pi / 2)  # five-pointed star, one point up


def texture_pattern(rng, texture, side):
    """Boolean ``side`` x ``side`` pattern of texture index ``texture`` at a random scale and phase."""
    u, v = _grid(side)
    frequency, phase = rng.uniform(2.5, 4.0), rng.uniform(0, 2 * np.pi)
    name = TEXTURES[texture]
    if name == "stripes":
        return np.sin(2 * np.pi * frequency * u + phase) > 0
    if name == "checks":
        return (np.floor(frequency * u + phase) + np.floor(frequency * v + phase)) % 2 == 0
    if name == "dots":
        return np.sin(2 * np.pi * frequency * u + phase) * np.sin(2 * np.pi * frequency * v + phase) > 0.45
    if name == "rings":
        return np.sin(2 * np.pi * frequency * np.hypot(u, v) + phase) > 0
    return np.sin(2 * np.pi * frequency * (v + 0.15 * np.sin(2 * np.pi * 1.5 * u)) + phase) > 0  # zigzag


def _contrasting_colours(rng):
    """Two random colours whose luminances differ by at least 70 of 255, so the texture always shows."""
    luminance = np.array([0.299, 0.587, 0.114])
    while True:
        fill, ink = rng.integers(0, 256, (2, 3))
        if abs((fill - ink) @ luminance) >= 70:
            return fill, ink


def _background(image, rng):
    size = image.size[0]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp + rng.normal(0, 10, (size, size, 3))
    image.paste(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    draw = ImageDraw.Draw(image)
    # Plain blobs and lines: clutter that has colour and edges but none of the class textures.
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.35, 2) * size
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(1, 4)))
