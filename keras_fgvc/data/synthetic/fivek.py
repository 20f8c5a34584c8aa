"""A 5K-compliance-style demo data set whose pictures carry the labels.

Each JPEG shows 2-3 people on a cluttered background. ``mask`` is 1 when every face wears a
mask (a coloured band over the lower face); 0 when every face is bare. ``distancing`` is 1
when neighbours stand at least 0.6 body widths apart; 0 when some neighbours touch. People vary in
number, scale, clothing, skin tone and mask colour; backgrounds are random gradients with random
shapes, so no single pixel statistic separates the classes.

The table has Zalo's exact columns (image_id, fname, mask, distancing, 5k) with labels hidden at
Zalo's rates (seed 004, figure 8: 734 / 1,273 of 4,175 rows miss mask / distancing, never both;
5k is missing whenever either is). ``truth.csv`` keeps every hidden label.
"""

import os

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

# Zalo 2021 5K training set: 4,175 rows, 734 without mask, 1,273 without distancing.
MISSING_MASK_RATE = 734 / 4175
MISSING_DISTANCING_RATE = 1273 / 4175

SKIN_TONES = [(255, 224, 189), (234, 192, 134), (198, 134, 66), (141, 85, 36), (92, 51, 23), (241, 194, 125)]
# Surgical white/blue, black, grey and green cloth; no skin-like tints, so a mask reads as a mask.
MASK_COLOURS = [(245, 245, 245), (150, 200, 255), (40, 40, 40), (160, 160, 170), (120, 220, 160)]


def make(root, num_images=1500, image_size=96, seed=0, test_images=0):
    """Writes ``train_meta.csv``, ``truth.csv`` and ``images/*.jpg`` under ``root``.

    Args:
        root: output folder (created).
        num_images: rows of ``train_meta.csv``.
        image_size: side of the square JPEGs.
        seed: makes the data set reproducible.
        test_images: if > 0, also an unlabelled ``public_test_meta.csv`` (image_id, fname) with its
            truth in ``public_test_truth.csv``, like the competition's public test.
    Returns:
        The path of ``train_meta.csv``.

    Example:
        >>> make("/tmp/fivek", num_images=64, seed=1)  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    truth = _draw_split(root, rng, num_images, image_size, first_id=1)
    meta = hide_labels(truth, rng)
    truth.to_csv(os.path.join(root, "truth.csv"), index=False)
    meta.to_csv(os.path.join(root, "train_meta.csv"), index=False)
    if test_images:
        test_truth = _draw_split(root, rng, test_images, image_size, first_id=num_images + 1)
        test_truth[["image_id", "fname"]].to_csv(os.path.join(root, "public_test_meta.csv"), index=False)
        test_truth.to_csv(os.path.join(root, "public_test_truth.csv"), index=False)
    return os.path.join(root, "train_meta.csv")


def _draw_split(root, rng, count, image_size, first_id):
    rows = []
    for image_id in range(first_id, first_id + count):
        mask, distancing = int(rng.integers(2)), int(rng.integers(2))
        fname = f"{image_id}.jpg"
        draw_scene(rng, image_size, mask, distancing).save(
            os.path.join(root, "images", fname), quality=int(rng.integers(80, 96))
        )
        rows.append((image_id, fname, float(mask), float(distancing), float(mask and distancing)))
    return pd.DataFrame(rows, columns=["image_id", "fname", "mask", "distancing", "5k"])


def hide_labels(truth, rng):
    """Zalo's missing pattern on a complete table (columns mask, distancing, 5k): one draw per row
    hides mask or distancing or nothing, never both; 5k is missing whenever either is."""
    meta = truth.copy()
    draw = rng.random(len(meta))
    hide_mask = draw < MISSING_MASK_RATE
    hide_distancing = (draw >= MISSING_MASK_RATE) & (draw < MISSING_MASK_RATE + MISSING_DISTANCING_RATE)
    meta.loc[hide_mask, "mask"] = np.nan
    meta.loc[hide_distancing, "distancing"] = np.nan
    meta.loc[hide_mask | hide_distancing, "5k"] = np.nan
    return meta


def draw_scene(rng, size, mask, distancing):
    """One picture: background clutter, then people placed by the distancing label."""
    image = Image.new("RGB", (size, size))
    _background(image, rng)
    draw = ImageDraw.Draw(image)
    for x, ground, width, height in layout(rng, size, distancing):
        _person(draw, rng, x, ground, width, height, masked=bool(mask))
    return image


def layout(rng, size, distancing):
    """(left x, ground y, body width, body height) of each person, left to right.

    Neighbouring bodies stand 0.6-1.2 body widths apart when ``distancing`` is 1, and overlap
    by up to 0.3 or stand at most 0.05 widths apart when it is 0. Two or three people keep faces
    large enough (10-15 px at 64 px) to be seen.
    """
    count = int(rng.integers(2, 4))
    height = size * rng.uniform(0.6, 0.85)
    width = height * 0.36
    gaps = rng.uniform(0.6, 1.2, count - 1) if distancing else rng.uniform(-0.3, 0.05, count - 1)
    span = width * (count + gaps.sum())
    while span > size * 0.96:  # shrink the group until it fits the frame
        height *= 0.9
        width = height * 0.36
        span = width * (count + gaps.sum())
    x = rng.uniform(size * 0.02, size * 0.98 - span)
    ground = rng.uniform(height + size * 0.02, size * 0.98)
    people = []
    for i in range(count):
        people.append((x, ground + rng.uniform(-0.08, 0.08) * height, width, height))
        x += width * (1 + (gaps[i] if i < count - 1 else 0))
    return people


def _background(image, rng):
    size = image.size[0]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp + rng.normal(0, 10, (size, size, 3))
    image.paste(Image.fromarray(np.clip(np.broadcast_to(pixels, (size, size, 3)), 0, 255).astype(np.uint8)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif shape == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(1, 4)))


def face(x, ground, width, height):
    """Centre x, centre y and diameter of the head of the person at (x, ground, width, height)."""
    head = height * 0.28
    return x + width / 2, ground - height * 0.72 - head * 0.55, head


def _person(draw, rng, x, ground, width, height, masked):
    cx, cy, head = face(x, ground, width, height)
    body_top = ground - height * 0.72
    shirt = tuple(int(c) for c in rng.integers(0, 256, 3))
    trousers = tuple(int(c) for c in rng.integers(0, 120, 3))
    draw.rectangle([x + width * 0.15, ground - height * 0.3, x + width * 0.85, ground], fill=trousers)
    draw.rounded_rectangle([x, body_top, x + width, ground - height * 0.28], radius=width * 0.25, fill=shirt)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    draw.ellipse([cx - head / 2, cy - head / 2, cx + head / 2, cy + head / 2], fill=skin)
    eye = max(head * 0.09, 0.6)
    for dx in (-0.18, 0.18):
        draw.ellipse([cx + dx * head - eye, cy - head * 0.1 - eye, cx + dx * head + eye, cy - head * 0.1 + eye],
                     fill=(20, 20, 20))
    if masked:
        colour = MASK_COLOURS[rng.integers(len(MASK_COLOURS))]
        draw.rectangle([cx - head * 0.5, cy - head * 0.02, cx + head * 0.5, cy + head * 0.45], fill=colour)
    else:
        draw.line([cx - head * 0.18, cy + head * 0.22, cx + head * 0.18, cy + head * 0.22], fill=(150, 30, 40),
                  width=max(1, int(head * 0.08)))
