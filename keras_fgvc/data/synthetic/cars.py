"""A Stanford-Cars-style demo: side views of one car silhouette whose classes differ in small details.

Every class shares the same car: a body, a cabin, two wheels. A class is one combination of five
attributes, and its name says which (``"<make> <model> <body> <year>"``, like Stanford Cars'
``"Audi S4 Sedan 2012"``):

    roof      body   Sedan / Hatchback / Coupe       the cabin profile
    windows   make   Arden / Belmont / Corvana       one pane / two panes / three panes
    wheels    model  Zephyr / Vela / Kestrel         solid hub cap / five spokes / thin ring rim
    lights    year   2007-08 / 2009-10 / 2011-12     headlight white / amber / blue
    stripe    year   odd / even                      no stripe / a stripe along the body

so two model years of one model differ only in a headlight and a stripe a few pixels high. Body
colour (from common car paints), facing direction, size and position are drawn per image, on a
cluttered street-like background, so the car's box matters and colour says nothing about the class.
Some images are greyscale (Stanford Cars has a few). The files follow the combined layout that
``data.sources.stanford_cars`` reads: ``cars_annos.mat`` (1-based classes and inclusive boxes, a
``test`` flag on half of each class) and ``car_ims/000001.jpg``, ...
"""

import io
import itertools
import os

import numpy as np
from PIL import Image, ImageDraw

BODIES = ("Sedan", "Hatchback", "Coupe")
MAKES = ("Arden", "Belmont", "Corvana")
MODELS = ("Zephyr", "Vela", "Kestrel")
# Halogen white, amber, xenon blue.
HEADLIGHTS = ((255, 250, 220), (255, 170, 0), (120, 190, 255))
FIRST_YEAR = 2007
# Common paints (white, black, silver, grey, red, blue, green, beige, yellow): a class comes in all of them.
PAINTS = ((235, 235, 235), (25, 25, 30), (180, 182, 188), (105, 108, 112), (170, 20, 25), (30, 60, 140),
          (30, 90, 50), (200, 185, 150), (230, 190, 30))
HEADER = b"MATLAB 5.0 MAT-file, written by keras_fgvc.data.synthetic.cars"
# Every attribute combination: (roof, windows, wheels, lights, stripe).
ATTRIBUTES = list(itertools.product(range(3), range(3), range(3), range(3), range(2)))
# Car outline in units of the car's length, facing right: height of the canvas, of the body, of the wheels.
CANVAS_HEIGHT, SILL, BELT, WHEEL_RADIUS = 0.46, 0.34, 0.18, 0.105
CABINS = (  # (x, y) corners of the cabin per roof, rear to front
    ((0.20, BELT), (0.32, 0.05), (0.62, 0.05), (0.78, BELT)),  # sedan: boot behind the cabin
    ((0.03, BELT), (0.07, 0.05), (0.60, 0.05), (0.78, BELT)),  # hatchback: roof to the tail
    ((0.24, BELT), (0.42, 0.09), (0.58, 0.09), (0.84, BELT)),  # coupe: low, raked
)


def class_attributes(num_classes: int) -> list[tuple[int, int, int, int, int]]:
    """The attributes of classes 0..num_classes-1, ordered by class name like Stanford Cars.

    A fixed permutation (not the data seed) picks the combinations, so every seed has the same classes
    and even 50 of the 162 combinations use every value of every attribute.
    """
    if not 2 <= num_classes <= len(ATTRIBUTES):
        raise ValueError(f"num_classes must be 2..{len(ATTRIBUTES)} (the attribute combinations); got {num_classes}")
    order = np.random.default_rng(196).permutation(len(ATTRIBUTES))[:num_classes]
    return sorted((ATTRIBUTES[i] for i in order), key=class_name)


def class_name(attributes) -> str:
    roof, windows, wheels, lights, stripe = attributes
    return f"{MAKES[windows]} {MODELS[wheels]} {BODIES[roof]} {FIRST_YEAR + 2 * lights + stripe}"


def make(root, seed=0, num_classes=50, images_per_class=40, image_size=128, greyscale_fraction=0.1):
    """Writes ``car_ims/*.jpg`` and ``cars_annos.mat`` (Stanford Cars' combined layout) under ``root``.

    Args:
        root: output folder (created).
        seed: makes the data set reproducible (same seed, same bytes).
        num_classes: number of car classes, 2..162.
        images_per_class: images of each class; half of them (rounded down) get ``test`` = 1.
        image_size: width of the landscape JPEGs; each height is drawn between 60 % and 80 % of it.
        greyscale_fraction: share of images saved as one-channel (mode "L") JPEGs.
    Returns:
        The path of ``cars_annos.mat``.

    Example:
        >>> make("/tmp/cars", seed=0, num_classes=50, images_per_class=8, image_size=96)  # doctest: +SKIP
        '/tmp/cars/cars_annos.mat'
    """
    if images_per_class < 2:
        raise ValueError(f"images_per_class must be at least 2 (one train, one test); got {images_per_class}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels (a car with visible details); got {image_size}")
    rng = np.random.default_rng(seed)
    classes = class_attributes(num_classes)
    os.makedirs(os.path.join(root, "car_ims"), exist_ok=True)
    records = []
    for label, attributes in enumerate(classes):
        in_test = np.zeros(images_per_class, dtype=bool)
        in_test[rng.permutation(images_per_class)[: images_per_class // 2]] = True
        for test in in_test:
            width = image_size
            height = round(image_size * rng.uniform(0.6, 0.8))
            image, box, _ = draw_example(rng, width, height, attributes)
            if rng.random() < greyscale_fraction:
                image = image.convert("L")
            relative = f"car_ims/{len(records) + 1:06d}.jpg"
            image.save(os.path.join(root, relative), quality=int(rng.integers(80, 96)))
            x1, y1, x2, y2 = box
            # MATLAB's convention: class from 1, boxes as inclusive 1-based pixels.
            records.append((relative, x1 + 1, y1 + 1, x2, y2, label + 1, int(test)))
    # Written last, so an interrupted run leaves no annotation file pointing at missing images.
    return _write_annotations(os.path.join(root, "cars_annos.mat"), records, [class_name(a) for a in classes])


def _write_annotations(mat_path, records, names):
    import scipy.io

    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    annotations = np.empty((1, len(records)), dtype=[(field, object) for field in fields])
    for i, (relative, x1, y1, x2, y2, label, test) in enumerate(records):
        # The real file's integer types: uint16 boxes, uint8 class (at most 162 here) and test flag.
        annotations[0, i] = (relative, *(np.uint16(v) for v in (x1, y1, x2, y2)), np.uint8(label), np.uint8(test))
    class_names = np.empty((1, len(names)), dtype=object)
    class_names[0, :] = names
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"annotations": annotations, "class_names": class_names})
    # savemat stamps the time into the 116-byte text header (which readers ignore); a fixed text keeps
    # the file byte-identical for one seed.
    data = HEADER.ljust(116) + buffer.getvalue()[116:]
    with open(mat_path, "wb") as file:
        file.write(data)
    return mat_path


def draw_example(rng, width, height, attributes):
    """One picture: (RGB image, car box (x1, y1, x2, y2) 0-based exclusive, boolean car mask).

    The box is the tight box of the car's pixels; the car lies wholly inside the picture.
    """
    image = Image.new("RGB", (width, height))
    _background(image, rng)
    # The car's canvas (length x CANVAS_HEIGHT * length, rounded up, + 1) must fit the picture both ways.
    length = min(rng.uniform(0.45, 0.9) * width, (height - 2) / CANVAS_HEIGHT)
    car = draw_car(rng, length, attributes)
    if rng.random() < 0.5:  # Stanford Cars shows cars facing either way
        car = car.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    left = int(rng.integers(0, width - car.width + 1))
    top = int(rng.integers(0, height - car.height + 1))
    image.paste(car, (left, top), car)
    alpha = np.zeros((height, width), dtype=bool)
    alpha[top:top + car.height, left:left + car.width] = np.asarray(car.getchannel("A")) > 0
    x1, y1, x2, y2 = car.getchannel("A").getbbox()
    return image, (left + x1, top + y1, left + x2, top + y2), alpha


def draw_car(rng, length, attributes):
    """The car on a transparent RGBA canvas, facing right; its class shows only in small details."""
    roof, windows, wheels, lights, stripe = attributes
    canvas = Image.new("RGBA", (int(np.ceil(length)) + 1, int(np.ceil(length * CANVAS_HEIGHT)) + 1), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)

    def at(x, y):
        return (x * length, y * length)

    paint = np.array(PAINTS[rng.integers(len(PAINTS))]) + rng.integers(-15, 16, 3)
    paint = tuple(int(c) for c in np.clip(paint, 0, 255))
    shade = tuple(int(c * 0.6) for c in paint)
    cabin = CABINS[roof]
    draw.polygon([at(*p) for p in cabin], fill=paint)
    draw.rounded_rectangle([*at(0.0, BELT), *at(1.0, SILL)], radius=0.05 * length, fill=paint)
    _windows(draw, at, cabin, windows, paint, glass=tuple(int(c) for c in rng.integers(40, 90, 3)))
    draw.line([at(0.52, BELT + 0.01), at(0.52, SILL - 0.02)], fill=shade, width=max(1, int(0.008 * length)))
    if stripe:
        # White on dark paint, black on light paint: always visible, never a colour cue.
        ink = (250, 250, 250) if sum(paint) < 380 else (15, 15, 15)
        draw.rectangle([*at(0.03, 0.255), *at(0.95, 0.275)], fill=ink)
    draw.ellipse([*at(0.945, 0.2), *at(1.0, 0.235)], fill=HEADLIGHTS[lights])
    draw.rectangle([*at(0.0, 0.2), *at(0.025, 0.235)], fill=(200, 0, 10))  # tail light: every class
    for centre in (0.2, 0.8):
        _wheel(draw, at, centre, wheels, length, spin=rng.uniform(0, 2 * np.pi))
    return canvas


def _windows(draw, at, cabin, style, paint, glass):
    (rx, _), (tx0, ty), (tx1, _), (fx, _) = cabin
    inset = 0.025
    # The glass follows the cabin's slopes, inset by a pillar's width.
    bottom, top = BELT - 0.01, ty + 0.02

    def rear_at(y):
        return rx + (tx0 - rx) * (BELT - y) / (BELT - ty) + inset

    def front_at(y):
        return fx - (fx - tx1) * (BELT - y) / (BELT - ty) - inset

    draw.polygon([at(rear_at(bottom), bottom), at(rear_at(top), top), at(front_at(top), top),
                  at(front_at(bottom), bottom)], fill=glass)
    # style 0: one pane; 1 and 2: evenly spaced pillars in the paint colour split it into 2 or 3 panes.
    left, right = rear_at(bottom), front_at(bottom)
    for k in range(1, style + 1):
        x = left + (right - left) * k / (style + 1)
        draw.rectangle([*at(x - 0.012, top - 0.01), *at(x + 0.012, bottom + 0.01)], fill=paint)


def _wheel(draw, at, centre, style, length, spin):
    cx, cy = at(centre, SILL + 0.01)
    radius = WHEEL_RADIUS * length
    tyre = (20, 20, 22)
    silver = (200, 200, 205)
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=tyre)
    if style == 0:  # solid hub cap
        r = 0.62 * radius
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=silver)
    elif style == 1:  # five spokes
        r = 0.65 * radius
        for k in range(5):
            angle = spin + 2 * np.pi * k / 5
            draw.line([cx, cy, cx + r * np.cos(angle), cy + r * np.sin(angle)], fill=silver,
                      width=max(1, int(0.18 * radius)))
    else:  # thin ring rim around a small cap
        r = 0.66 * radius
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=silver, width=max(1, int(0.12 * radius)))
        r = 0.2 * radius
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=silver)


def _background(image, rng):
    """A street-like scene: sky and ground gradients, then buildings, trees and poles in random colours."""
    width, height = image.size
    horizon = rng.uniform(0.3, 0.7) * height
    rows = np.arange(height)[:, None, None]
    sky, ground = rng.integers(60, 256, 3), rng.integers(30, 180, 3)
    pixels = np.where(rows < horizon, sky - rows * 0.3, ground + (rows - horizon) * 0.2)
    pixels = pixels + rng.normal(0, 8, (height, width, 3))
    image.paste(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0 = rng.uniform(-0.1, 1.0) * width
        kind = rng.integers(3)
        if kind == 0:  # a building standing on the horizon
            w, h = rng.uniform(0.08, 0.3) * width, rng.uniform(0.1, 0.5) * height
            draw.rectangle([x0, horizon - h, x0 + w, horizon], fill=colour)
        elif kind == 1:  # a tree crown or a bush
            d = rng.uniform(0.05, 0.25) * width
            y0 = rng.uniform(0.0, 0.9) * height
            draw.ellipse([x0, y0, x0 + d, y0 + d * rng.uniform(0.6, 1.2)], fill=colour)
        else:  # a pole, a kerb, a road marking
            y0 = rng.uniform(0.0, 1.0) * height
            draw.line([x0, y0, x0 + rng.uniform(-0.3, 0.3) * width, y0 + rng.uniform(-0.5, 0.5) * height],
                      fill=colour, width=int(rng.integers(1, 5)))
