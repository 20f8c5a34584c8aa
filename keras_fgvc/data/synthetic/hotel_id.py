"""A Hotel-ID-2022-style demo data set: hotels whose rooms share a style, photographed many ways.

A hotel is a style: wall and floor palette, wall pattern, headboard, bedding, lamps, window and
the art over the bed, laid out in two or three room variants. Each photo is one room of its hotel
with the furniture nudged, seen through a random crop, a small rotation, a perspective (yaw/tilt)
warp and a mirror, under random brightness, contrast and colour cast, saved as a JPEG. Palettes
and patterns come from shared lists, so hotels share single traits and only their combination
identifies them, as with real hotel chains.

Written in Kaggle's layout (``data.sources.hotel_id``):

    root/train_images/<hotel_id>/<16 hex digits>.jpg   hotel ids: non-contiguous ints, like Kaggle's
    root/train_masks/<n>.png        red rectangles of arbitrary size: RGBA on transparency or RGB on black
    root/test_images/*.jpg          new photos of the same hotels, each occluded with one of the masks
    root/sample_submission.csv      image_id,hotel_id (five ids per row, Kaggle's format)
    root/test_truth.csv             image_id,hotel_id: the demo's hidden test labels
"""

import os

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

RED = (255, 0, 0)
# Muted hotel-room palettes; each hotel draws one entry and jitters it, so several hotels share a colour family.
WALL_COLOURS = [(232, 224, 206), (200, 190, 170), (170, 185, 190), (215, 205, 225), (180, 160, 140),
                (140, 150, 130), (225, 215, 180), (120, 130, 150), (205, 175, 160), (240, 240, 235)]
FLOOR_COLOURS = [(110, 80, 60), (150, 120, 90), (70, 70, 80), (120, 110, 100), (90, 60, 70), (160, 150, 130),
                 (60, 80, 90), (130, 95, 55)]
FABRIC_COLOURS = [(245, 245, 240), (230, 220, 200), (150, 40, 50), (40, 60, 110), (90, 110, 80), (200, 160, 60),
                  (110, 90, 140), (60, 60, 60), (180, 120, 100), (70, 130, 150)]
WOOD_COLOURS = [(90, 60, 40), (140, 100, 60), (60, 40, 30), (190, 160, 120), (40, 35, 35), (220, 215, 205)]
WALL_PATTERNS = ("plain", "vertical_stripes", "horizontal_bands", "checks", "dots", "diamonds", "wainscot")
FLOOR_PATTERNS = ("plain", "boards", "tiles")
HEADBOARDS = ("rectangle", "rounded", "arch", "panels")
LAMPS = ("cone", "drum", "globe")


def make(root, seed=0, num_hotels=40, images_per_hotel=16, image_size=128, num_masks=64, test_images=80):
    """Writes ``train_images/``, ``train_masks/``, ``test_images/`` and the CSVs under ``root``.

    Args:
        root: output folder (created); use an empty one: files of an earlier run with other arguments
            would stay and mix in (files of the same name are replaced).
        seed: makes the data set reproducible, byte for byte.
        num_hotels: hotel folders in ``train_images/``.
        images_per_hotel: photos per hotel folder.
        image_size: side of the square JPEGs.
        num_masks: PNGs in ``train_masks/``.
        test_images: occluded photos in ``test_images/`` (hotels drawn uniformly), truth in ``test_truth.csv``.
    Returns:
        The path of ``train_images/``.

    Example:
        >>> make("/tmp/hotel_demo", seed=1, num_hotels=8, images_per_hotel=6)  # doctest: +SKIP
        '/tmp/hotel_demo/train_images'
    """
    if num_hotels < 1 or images_per_hotel < 1 or num_masks < 1 or image_size < 16:
        raise ValueError("make needs num_hotels, images_per_hotel, num_masks >= 1 and image_size >= 16")
    rng = np.random.default_rng(seed)
    # Kaggle's hotel ids are integers with gaps (3,116 hotels spread over ids up to ~200,000).
    hotel_ids = sorted(int(h) for h in rng.choice(np.arange(1, 100_000), num_hotels, replace=False))
    styles = [hotel_style(rng) for _ in hotel_ids]
    names = set()
    train_dir = os.path.join(root, "train_images")
    for hotel, style in zip(hotel_ids, styles):
        os.makedirs(os.path.join(train_dir, str(hotel)), exist_ok=True)
        for _ in range(images_per_hotel):
            _save_jpeg(draw_photo(rng, style, image_size), os.path.join(train_dir, str(hotel), _new_name(rng, names)), rng)
    masks = _write_masks(rng, os.path.join(root, "train_masks"), num_masks)
    test_dir = os.path.join(root, "test_images")
    os.makedirs(test_dir, exist_ok=True)
    truth = []
    for _ in range(test_images):
        hotel = int(rng.integers(num_hotels))
        photo = occlude(draw_photo(rng, styles[hotel], image_size), masks[int(rng.integers(len(masks)))])
        name = _new_name(rng, names)
        _save_jpeg(photo, os.path.join(test_dir, name), rng)
        truth.append((name, hotel_ids[hotel]))
    truth = pd.DataFrame(truth, columns=["image_id", "hotel_id"])
    truth.to_csv(os.path.join(root, "test_truth.csv"), index=False)
    guess = " ".join(str(h) for h in hotel_ids[:5])
    pd.DataFrame({"image_id": truth["image_id"], "hotel_id": guess}).to_csv(
        os.path.join(root, "sample_submission.csv"), index=False)
    return train_dir


def _new_name(rng, taken):
    while True:
        name = f"{int(rng.integers(0, 2**63)):016x}.jpg"
        if name not in taken:
            taken.add(name)
            return name


def _save_jpeg(image, path, rng):
    image.save(path, quality=int(rng.integers(75, 96)))


def _jitter(rng, colour, amount):
    return tuple(int(v) for v in np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255))


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def hotel_style(rng) -> dict:
    """One hotel's look: palette, patterns, furniture and 2-3 room layouts (fractions of the canvas)."""
    wall = _jitter(rng, _pick(rng, WALL_COLOURS), 15)
    style = {
        "wall": wall,
        "wall_accent": _jitter(rng, wall, 45),
        "wall_pattern": _pick(rng, WALL_PATTERNS),
        "period": float(rng.uniform(0.05, 0.14)),
        "fill_ratio": float(rng.uniform(0.25, 0.6)),
        "floor": _jitter(rng, _pick(rng, FLOOR_COLOURS), 15),
        "floor_pattern": _pick(rng, FLOOR_PATTERNS),
        "bedspread": _jitter(rng, _pick(rng, FABRIC_COLOURS), 10),
        "runner": _jitter(rng, _pick(rng, FABRIC_COLOURS), 10),
        "pillow": _jitter(rng, _pick(rng, FABRIC_COLOURS[:2] + [(200, 200, 205)]), 8),
        "headboard": _pick(rng, HEADBOARDS),
        "headboard_colour": _jitter(rng, _pick(rng, WOOD_COLOURS + FABRIC_COLOURS[2:]), 10),
        "headboard_height": float(rng.uniform(0.12, 0.26)),
        "wood": _jitter(rng, _pick(rng, WOOD_COLOURS), 10),
        "lamp": _pick(rng, LAMPS),
        "shade": _jitter(rng, _pick(rng, FABRIC_COLOURS), 10),
        "curtain": _jitter(rng, _pick(rng, FABRIC_COLOURS), 10),
        "frame": _jitter(rng, _pick(rng, WOOD_COLOURS), 10),
        "art": [(_jitter(rng, _pick(rng, FABRIC_COLOURS), 30), rng.uniform(0, 1, 4).tolist(), int(rng.integers(2)))
                for _ in range(3)],
    }
    style["rooms"] = [{
        "horizon": float(rng.uniform(0.5, 0.66)),
        "bed_x": float(rng.uniform(0.35, 0.65)),
        "bed_width": float(rng.uniform(0.32, 0.5)),
        "window_side": int(rng.integers(2)),  # 0: left of the bed, 1: right
        "window_width": float(rng.uniform(0.12, 0.22)),
        "art_width": float(rng.uniform(0.12, 0.25)),
        "nightstands": int(rng.integers(1, 3)),
    } for _ in range(int(rng.integers(2, 4)))]
    return style


def draw_photo(rng, style, size):
    """One photo of a room of ``style``: the room drawn on a 1.5x canvas, then a random view and light."""
    room = dict(_pick(rng, style["rooms"]))
    for key, spread in (("horizon", 0.02), ("bed_x", 0.03), ("bed_width", 0.02)):
        room[key] += float(rng.uniform(-spread, spread))  # housekeeping moves furniture a little
    canvas = draw_room(style, room, round(size * 1.5))
    return _light(rng, _view(rng, canvas, size))


def draw_room(style, room, side):
    """The room ``room`` of ``style`` as a square RGB image of ``side`` pixels (front view)."""
    horizon = int(room["horizon"] * side)
    pixels = np.empty((side, side, 3), np.uint8)
    pixels[:horizon] = _wall(style, side)[:horizon]
    pixels[horizon:] = _floor(style, side, horizon)[horizon:]
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    s = float(side)
    bed_left = (room["bed_x"] - room["bed_width"] / 2) * s
    bed_right = (room["bed_x"] + room["bed_width"] / 2) * s
    # Window and curtains on one side of the bed, on the wall.
    window_w = room["window_width"] * s
    window_x = bed_left - 0.12 * s - window_w if room["window_side"] == 0 else bed_right + 0.12 * s
    window_top, window_bottom = horizon - 0.4 * s, horizon - 0.12 * s
    draw.rectangle([window_x - 4, window_top - 4, window_x + window_w + 4, window_bottom + 4], fill=style["wood"])
    draw.rectangle([window_x, window_top, window_x + window_w, window_bottom], fill=(170, 205, 235))
    draw.line([window_x + window_w / 2, window_top, window_x + window_w / 2, window_bottom], fill=style["wood"],
              width=max(1, side // 80))
    for x in (window_x - 0.06 * s, window_x + window_w):
        draw.rectangle([x, window_top - 0.05 * s, x + 0.06 * s, horizon], fill=style["curtain"])
    # Art over the bed.
    art_w = room["art_width"] * s
    art_x, art_top = room["bed_x"] * s - art_w / 2, horizon - 0.45 * s
    draw.rectangle([art_x - 3, art_top - 3, art_x + art_w + 3, art_top + art_w * 0.7 + 3], fill=style["frame"])
    draw.rectangle([art_x, art_top, art_x + art_w, art_top + art_w * 0.7], fill=(235, 232, 225))
    for colour, (x0, y0, w, h), ellipse in style["art"]:
        box = [art_x + x0 * art_w * 0.6, art_top + y0 * art_w * 0.4,
               art_x + (x0 * 0.6 + 0.2 + w * 0.2) * art_w, art_top + (y0 * 0.4 + 0.15 + h * 0.15) * art_w]
        (draw.ellipse if ellipse else draw.rectangle)(box, fill=colour)
    _headboard(draw, style, bed_left, bed_right, horizon, s)
    # Bed: mattress with the bedspread, a runner across the foot, two pillows.
    bed_top, bed_bottom = horizon - 0.03 * s, horizon + 0.22 * s
    draw.rectangle([bed_left, bed_top, bed_right, bed_bottom], fill=style["bedspread"])
    draw.rectangle([bed_left, bed_bottom - 0.08 * s, bed_right, bed_bottom - 0.04 * s], fill=style["runner"])
    pillow_w = (bed_right - bed_left) * 0.4
    for x in (bed_left + 0.06 * pillow_w, bed_right - 1.06 * pillow_w):
        draw.rounded_rectangle([x, bed_top - 0.05 * s, x + pillow_w, bed_top + 0.03 * s], radius=0.02 * s,
                               fill=style["pillow"])
    sides = [(bed_left - 0.13 * s, bed_left - 0.01 * s), (bed_right + 0.01 * s, bed_right + 0.13 * s)]
    for x0, x1 in sides[2 - room["nightstands"]:]:
        draw.rectangle([x0, horizon - 0.04 * s, x1, horizon + 0.08 * s], fill=style["wood"])
        _lamp(draw, style, (x0 + x1) / 2, horizon - 0.04 * s, s)
    return image


def _wall(style, side):
    y, x = np.mgrid[0:side, 0:side]
    period = max(4, int(style["period"] * side))
    ratio = style["fill_ratio"]
    u, v = (x % period) / period, (y % period) / period
    pattern = style["wall_pattern"]
    if pattern == "vertical_stripes":
        accent = u < ratio
    elif pattern == "horizontal_bands":
        accent = v < ratio * 0.5
    elif pattern == "checks":
        accent = ((x // period + y // period) % 2) == 1
    elif pattern == "dots":
        accent = (u - 0.5) ** 2 + (v - 0.5) ** 2 < (ratio * 0.5) ** 2
    elif pattern == "diamonds":
        accent = np.abs(u - 0.5) + np.abs(v - 0.5) < ratio * 0.5
    elif pattern == "wainscot":
        accent = y > side * (0.32 + 0.15 * ratio)
    else:
        accent = np.zeros((side, side), bool)
    return np.where(accent[..., None], np.array(style["wall_accent"], np.uint8), np.array(style["wall"], np.uint8))


def _floor(style, side, horizon):
    y, x = np.mgrid[0:side, 0:side]
    floor = np.array(style["floor"], np.int16)
    pattern = style["floor_pattern"]
    if pattern == "boards":
        # Board seams run towards the vanishing point at the horizon's centre.
        depth = np.maximum(y - horizon, 1) / side
        seam = (((x - side / 2) / depth / side * 0.08) % 1.0) < 0.12
        shade = np.where(seam, -35, 0)
    elif pattern == "tiles":
        depth = np.maximum(y - horizon, 1)
        tile = (((x - side / 2) / depth * 0.1).astype(int) + (np.log(depth) * 3).astype(int)) % 2
        shade = np.where(tile == 1, 25, -10)
    else:
        shade = np.zeros((side, side), np.int16)
    return np.clip(floor + shade[..., None], 0, 255).astype(np.uint8)


def _headboard(draw, style, left, right, horizon, s):
    top = horizon - (0.05 + style["headboard_height"]) * s
    box = [left - 0.02 * s, top, right + 0.02 * s, horizon]
    colour, shape = style["headboard_colour"], style["headboard"]
    if shape == "rounded":
        draw.rounded_rectangle(box, radius=0.05 * s, fill=colour)
    elif shape == "arch":
        width = box[2] - box[0]
        draw.pieslice([box[0], top, box[2], top + width * 0.5], 180, 360, fill=colour)
        draw.rectangle([box[0], top + width * 0.25, box[2], horizon], fill=colour)
    elif shape == "panels":
        count, width = 4, (box[2] - box[0]) / 4
        for i in range(count):
            draw.rectangle([box[0] + i * width + 1, top, box[0] + (i + 1) * width - 1, horizon], fill=colour)
    else:
        draw.rectangle(box, fill=colour)


def _lamp(draw, style, cx, table_top, s):
    draw.rectangle([cx - 0.006 * s, table_top - 0.08 * s, cx + 0.006 * s, table_top], fill=(60, 55, 50))
    top, bottom = table_top - 0.14 * s, table_top - 0.07 * s
    if style["lamp"] == "cone":
        draw.polygon([(cx - 0.025 * s, top), (cx + 0.025 * s, top), (cx + 0.045 * s, bottom), (cx - 0.045 * s, bottom)],
                     fill=style["shade"])
    elif style["lamp"] == "drum":
        draw.rectangle([cx - 0.04 * s, top, cx + 0.04 * s, bottom], fill=style["shade"])
    else:
        draw.ellipse([cx - 0.04 * s, top - 0.01 * s, cx + 0.04 * s, bottom + 0.01 * s], fill=style["shade"])


def _view(rng, canvas, size):
    """A camera view of ``canvas``: crop, rotation, yaw/tilt and mirror in one quad warp to ``size``."""
    side = canvas.size[0]
    crop = side * np.sqrt(rng.uniform(0.35, 0.9))  # 35-90% of the room's area
    cx = rng.uniform(crop / 2, side - crop / 2)
    cy = rng.uniform(crop / 2, side - crop / 2)
    # Corners (upper-left, lower-left, lower-right, upper-right) around the crop centre.
    corners = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]], float) * crop / 2
    yaw, tilt = rng.uniform(-0.12, 0.12, 2)
    corners[:, 1] *= 1 + yaw * corners[:, 0] / (crop / 2)  # one side looks taller: the camera turned
    corners[:, 0] *= 1 + tilt * corners[:, 1] / (crop / 2)  # top narrower or wider: the camera tilted
    angle = np.deg2rad(rng.uniform(-8, 8))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rotation.T + [cx, cy]
    corners = np.clip(corners, 0, side - 1)
    image = canvas.transform((size, size), Image.QUAD, corners.ravel().tolist(), Image.BILINEAR)
    return image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def _light(rng, image):
    """Brightness, contrast, a colour cast (lamp vs daylight) and sensor noise."""
    pixels = np.asarray(image, np.float32)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.7, 1.3)
    pixels = pixels * rng.uniform(0.9, 1.1, 3) + rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def _write_masks(rng, mask_dir, count):
    """Kaggle-like occlusion masks: one red rectangle on a canvas of arbitrary size, as RGBA with
    transparency or as opaque RGB on black; returns their boolean arrays (True = occluded)."""
    os.makedirs(mask_dir, exist_ok=True)
    masks = []
    for index in range(count):
        width, height = (int(v) for v in rng.integers(96, 321, 2))
        box_w, box_h = int(width * rng.uniform(0.25, 0.5)), int(height * rng.uniform(0.25, 0.5))
        left, top = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
        mask = np.zeros((height, width), bool)
        mask[top:top + box_h, left:left + box_w] = True
        if rng.random() < 0.5:
            pixels = np.zeros((height, width, 4), np.uint8)
            pixels[mask] = (*RED, 255)
            Image.fromarray(pixels, "RGBA").save(os.path.join(mask_dir, f"{index:05d}.png"))
        else:
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[mask] = RED
            Image.fromarray(pixels, "RGB").save(os.path.join(mask_dir, f"{index:05d}.png"))
        masks.append(mask)
    return masks


def occlude(image, mask):
    """``image`` painted red where ``mask`` (any size; scaled nearest to the image) is True."""
    scaled = np.asarray(Image.fromarray(mask).resize(image.size, Image.NEAREST))
    pixels = np.array(image)
    pixels[scaled] = RED
    return Image.fromarray(pixels)
