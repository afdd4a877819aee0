"""The embedded demo detection dataset: real photographs that scikit-image ships, cut and pasted.

Nothing is downloaded. The objects are cut out of the photos bundled in ``skimage/data/`` (read
as files, so nothing goes through ``skimage.data``'s fetcher, which downloads the rest) and pasted,
with random scale, aspect, flip, colour and occlusion, onto random crops of other bundled
photos and textures. The result is a small VOC-style dataset on which the whole pipeline
(proposals, region classifier, evaluation) trains and runs on a CPU in minutes.

Where a class has many real instances (24 coins, 100 LFW faces) every third instance is held
out of train, so val/test show objects the classifier never saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage

from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.errors import InputError
from incdet.io import atomic_path, read_image, write_json, write_text

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"

# 256x192: selective search's time grows with the pixel count. On these images (scale=500,
# sigma=0.9, min_size=10, one core) it took 0.65 s per image at 256x192 against 1.07 s at
# 320x240, and it found ~35% fewer regions to classify, so proposals for the 40 test images take
# about 25 s. Objects of 30..100 px remain recognisable at this size.
IMAGE_WIDTH, IMAGE_HEIGHT = 256, 192
# "benchmark": a larger held-out split (written only when asked for: ``--benchmark-images``), on which
# one object weighs little enough to compare detectors; the test split stays the quick one.
SPLITS = ("train", "val", "test", "benchmark")
DEFAULT_COUNTS = {"train": 240, "val": 40, "test": 40, "benchmark": 0}
CLASSES = ("cat", "cup", "rocket", "coin", "face")
MANIFEST = "demo.json"  # marks a folder as demo output, so a re-run may overwrite it
JPEG_QUALITY = 90

# Object size is the square root of its box area, drawn log-uniformly in [MIN_SIZE, MAX_SIZE]
# but never more than MAX_UPSCALE times the cut-out's own size, so no object becomes a blur.
MIN_SIZE, MAX_SIZE, MAX_UPSCALE = 30.0, 100.0, 3.0
ASPECT_JITTER = (3 / 4, 4 / 3)
MAX_OBJECTS = 4
MIN_VISIBLE = 0.6  # a later object may hide at most 40% of an earlier one
HELD_OUT_EVERY = 3  # instance i of a many-instance class is val/test-only when i % 3 == 2

# Classes with one or two real instances (used in every split), outlined by hand in source-image
# pixels. "ellipse": the ellipse inscribed in the box (x1, y1, x2, y2); "polygon": (x, y) vertices.
OBJECTS = (
    ("cat", "chelsea.png", "ellipse", (5, 0, 410, 300)),
    ("cup", "coffee.png", "polygon", (
        (107, 123), (87, 153), (76, 193), (75, 271), (84, 310), (104, 345), (135, 370), (180, 385),
        (240, 390), (300, 389), (355, 380), (400, 362), (440, 333), (465, 300), (477, 262),
        (479, 218), (466, 175), (445, 140), (415, 109), (423, 82), (419, 70), (405, 67), (395, 74),
        (364, 41), (325, 23), (262, 19), (209, 41), (184, 68), (147, 86))),
    ("rocket", "rocket.jpg", "polygon", (  # Falcon 9 on the launch pad
        (321, 125), (314, 137), (311, 155), (311, 392), (333, 392), (333, 155), (329, 137))),
    ("rocket", "astronaut.png", "polygon", (  # the Space Shuttle model behind the astronaut
        (418, 2), (432, 13), (437, 40), (440, 38), (448, 42), (452, 50), (453, 210), (455, 230),
        (458, 260), (457, 277), (440, 283), (417, 283), (390, 283), (370, 273), (360, 233),
        (355, 222), (380, 180), (380, 53), (385, 42), (395, 40), (400, 20), (405, 7))),
)

# The 24 coins of coins.png, row by row, each the ellipse inscribed in its box (x1, y1, x2, y2).
COIN_BOXES = (
    (22, 35, 67, 74), (81, 39, 120, 73), (132, 29, 179, 73), (192, 29, 240, 73), (255, 33, 296, 72), (305, 16, 364, 72),
    (25, 104, 67, 146), (84, 107, 122, 145), (134, 110, 174, 146), (186, 105, 227, 144), (245, 95, 296, 144), (317, 106, 356, 145),
    (26, 177, 63, 217), (80, 175, 124, 217), (135, 179, 174, 217), (189, 170, 236, 217), (251, 173, 297, 216), (315, 156, 380, 218),
    (18, 233, 74, 288), (92, 245, 136, 288), (144, 237, 201, 287), (220, 241, 269, 288), (276, 239, 326, 288), (335, 248, 381, 289),
)
LFW_FACES = 100  # lfw_subset.npy: 100 tight 25x25 grey face crops, then 100 non-faces

# Backgrounds: photos and textures that show none of the classes.
BACKGROUNDS = ("brick.png", "grass.png", "gravel.png", "moon.png", "hubble_deep_field.jpg",
               "motorcycle_left.png", "motorcycle_right.png")


@dataclass
class Cutout:
    """One real object instance: its pixels and a soft mask, cropped tight to the mask."""

    label: str
    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1]; > 0.5 is the object


def _source(name: str) -> np.ndarray:
    path = SKIMAGE_DATA / name
    if not path.is_file():
        raise InputError(path, "missing from scikit-image's bundled data; reinstall scikit-image")
    return np.load(path) if path.suffix == ".npy" else read_image(path)


def _ellipse_alpha(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """Anti-aliased ellipse inscribed in ``box`` (1-px soft edge, so pastes show no jaggies)."""
    x1, y1, x2, y2 = box
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32) + 0.5
    ax, ay = (x2 - x1) / 2, (y2 - y1) / 2
    r = np.hypot((xs - (x1 + x2) / 2) / ax, (ys - (y1 + y2) / 2) / ay)
    return np.clip((1 - r) * min(ax, ay) + 0.5, 0, 1).astype(np.float32)


def _polygon_alpha(shape: tuple[int, int], points: tuple[tuple[int, int], ...]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.array(points, np.int32)], 255, lineType=cv2.LINE_AA)
    return mask.astype(np.float32) / 255


def _cut(label: str, image: np.ndarray, alpha: np.ndarray) -> Cutout:
    ys, xs = np.nonzero(alpha > 0.5)
    crop = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return Cutout(label, np.ascontiguousarray(image[crop]), np.ascontiguousarray(alpha[crop]))


def load_cutouts() -> tuple[dict[str, list[Cutout]], dict[str, list[Cutout]]]:
    """Object instances per class: (train pool, val/test pool).

    The few-instance classes (OBJECTS) are in both pools; coins and faces are split so
    held-out images show unseen instances.
    """
    train: dict[str, list[Cutout]] = {c: [] for c in CLASSES}
    held: dict[str, list[Cutout]] = {c: [] for c in CLASSES}
    for label, name, shape, outline in OBJECTS:
        image = _source(name)
        alpha = (_ellipse_alpha if shape == "ellipse" else _polygon_alpha)(image.shape[:2], outline)
        cut = _cut(label, image, alpha)
        train[label].append(cut)
        held[label].append(cut)
    coin_image = _source("coins.png")
    coins = [_cut("coin", coin_image, _ellipse_alpha(coin_image.shape[:2], box)) for box in COIN_BOXES]
    faces = []
    for face in (_source("lfw_subset.npy")[:LFW_FACES] * 255 + 0.5).astype(np.uint8):
        rgb = np.repeat(face[:, :, None], 3, axis=2)
        faces.append(_cut("face", rgb, _ellipse_alpha(face.shape, (0, 0, face.shape[1], face.shape[0]))))
    for instances in (coins, faces):
        for i, cut in enumerate(instances):
            (held if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else train)[cut.label].append(cut)
    return train, held


def _jitter_colour(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Brightness, contrast and saturation jitter, float32 in 0..255."""
    x = rgb.astype(np.float32) * rng.uniform(0.75, 1.25)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.25) + mean
    grey = x.mean(axis=2, keepdims=True)
    return np.clip(grey + (x - grey) * rng.uniform(0.6, 1.4), 0, 255)


def _shrink(image: np.ndarray, longest: int) -> np.ndarray:
    """Downscale so the longer side is at most ``longest``; saves resizing big photos per image."""
    f = longest / max(image.shape[:2])
    return image if f >= 1 else cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)


def _background(rng: np.random.Generator, sources: list[np.ndarray]) -> np.ndarray:
    """A random crop (image aspect, 50-100% of the largest fitting one) resized and tinted."""
    src = sources[rng.integers(len(sources))]
    h_max = min(src.shape[0], src.shape[1] * IMAGE_HEIGHT / IMAGE_WIDTH)
    h = int(h_max * rng.uniform(0.5, 1.0))
    w = int(h * IMAGE_WIDTH / IMAGE_HEIGHT)
    y, x = rng.integers(src.shape[0] - h + 1), rng.integers(src.shape[1] - w + 1)
    crop = cv2.resize(src[y : y + h, x : x + w], (IMAGE_WIDTH, IMAGE_HEIGHT), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)  # gives the grey textures some colour
    return np.clip(_jitter_colour(rng, crop) * tint, 0, 255)


def _transform(rng: np.random.Generator, cut: Cutout) -> tuple[np.ndarray, np.ndarray]:
    """Scale, aspect jitter, flip and colour jitter of one cut-out -> (rgb float32, alpha)."""
    h0, w0 = cut.alpha.shape
    aspect = w0 / h0 * np.exp(rng.uniform(*np.log(ASPECT_JITTER)))
    # Bound the size by what fits in 90% of the image before drawing it (clamping afterwards
    # would pile thin objects such as the rocket up at full image height).
    fits = min(0.9 * IMAGE_WIDTH / np.sqrt(aspect), 0.9 * IMAGE_HEIGHT * np.sqrt(aspect))
    largest = min(MAX_SIZE, MAX_UPSCALE * np.sqrt(h0 * w0), fits)
    size = np.exp(rng.uniform(np.log(min(MIN_SIZE, largest)), np.log(largest)))
    w, h = max(2, round(size * np.sqrt(aspect))), max(2, round(size / np.sqrt(aspect)))
    interp = cv2.INTER_AREA if w * h < w0 * h0 else cv2.INTER_LINEAR
    rgb, alpha = cv2.resize(cut.rgb, (w, h), interpolation=interp), cv2.resize(cut.alpha, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return _jitter_colour(rng, rgb), alpha


def _visible_enough(owner: np.ndarray, full_areas: list[int], cover: np.ndarray) -> bool:
    """Would every earlier object keep MIN_VISIBLE of its pixels if ``cover`` were pasted on top?"""
    hidden = np.bincount(owner[cover & (owner >= 0)], minlength=len(full_areas))
    visible = np.bincount(owner[owner >= 0], minlength=len(full_areas)) - hidden
    return bool(np.all(visible >= MIN_VISIBLE * np.asarray(full_areas)))


def make_image(rng: np.random.Generator, pool: dict[str, list[Cutout]], backgrounds: list[np.ndarray],
               first_label: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One composite image: (rgb uint8, boxes (N, 4) xyxy, labels).

    Each box is the full pasted extent of its object's mask (also where partly hidden).
    ``first_label`` is the class of the first object; the others are drawn at random.
    """
    canvas = _background(rng, backgrounds)
    owner = np.full((IMAGE_HEIGHT, IMAGE_WIDTH), -1, np.int64)  # index of the object seen at each pixel
    full_areas: list[int] = []
    boxes, labels = [], []
    n = rng.integers(1, MAX_OBJECTS + 1)
    for label in [first_label] + [CLASSES[i] for i in rng.integers(len(CLASSES), size=n - 1)]:
        cuts = pool[label]
        rgb, alpha = _transform(rng, cuts[rng.integers(len(cuts))])
        h, w = alpha.shape
        for _ in range(10):  # a few placements; give the object up if each hides too much
            x, y = int(rng.integers(IMAGE_WIDTH - w + 1)), int(rng.integers(IMAGE_HEIGHT - h + 1))
            cover = np.zeros_like(owner, bool)
            cover[y : y + h, x : x + w] = alpha > 0.5
            if _visible_enough(owner, full_areas, cover):
                break
        else:
            continue
        region = canvas[y : y + h, x : x + w]
        region += alpha[:, :, None] * (rgb - region)
        owner[cover] = len(full_areas)
        full_areas.append(int(cover.sum()))
        ys, xs = np.nonzero(cover)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(label)
    image = (canvas + 0.5).astype(np.uint8)
    return image, np.array(boxes, np.float32).reshape(-1, 4), labels


def _previous_counts(root: Path) -> dict[str, int] | None:
    """Split sizes recorded by an earlier demo run in ``root``; None if it holds none."""
    try:
        counts = json.loads((root / MANIFEST).read_text())["counts"]
        return {split: int(counts.get(split, 0)) for split in SPLITS}  # demos made before the benchmark split lack it
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _prepare_root(root: Path, counts: dict[str, int], force: bool) -> None:
    """Refuse a foreign non-empty folder; in an earlier demo, remove only its surplus numbered files."""
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder")
    previous = _previous_counts(root) if root.is_dir() else None
    if previous is None:
        if root.is_dir() and any(root.iterdir()) and not force:
            raise InputError(root, f"folder is not empty and holds no earlier demo ({MANIFEST}); "
                                   "choose an empty or new folder, or pass --force (nothing is deleted)")
        return
    for split in SPLITS:
        for i in range(counts[split], previous[split]):
            (root / split / "images" / f"{i:04d}.jpg").unlink(missing_ok=True)
            (root / split / "annotations" / f"{i:04d}.xml").unlink(missing_ok=True)


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise InputError(path, "could not encode JPEG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def generate_demo(root: Path, seed: int = 0, counts: dict[str, int] | None = None, force: bool = False) -> dict:
    """Write the demo dataset to ``root`` and return its summary (images and objects per split and class).

    Same ``seed`` -> byte-identical files. Each split draws from its own random stream
    (``[seed, split index]``), so splits never share an image. ``counts`` overrides the split sizes.
    """
    root = Path(root)
    unknown = set(counts or {}) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; expected {SPLITS}")
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    _prepare_root(root, counts, force)
    manifest = {"generator": "incdet data demo", "seed": seed, "counts": counts,
                "image_size": [IMAGE_WIDTH, IMAGE_HEIGHT], "classes": list(CLASSES)}
    write_json(root / MANIFEST, manifest)  # first, so an interrupted run can be re-run in place
    write_text(root / "classes.txt", "".join(f"{c}\n" for c in CLASSES))
    train_pool, held_pool = load_cutouts()
    backgrounds = [_shrink(_source(name), 2 * IMAGE_WIDTH) for name in BACKGROUNDS]
    splits = {}
    for k, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, k])
        pool = train_pool if split == "train" else held_pool
        objects = dict.fromkeys(CLASSES, 0)
        for i in range(counts[split]):
            # Cycling the first object's class puts every class in every split of >= 5 images.
            image, boxes, labels = make_image(rng, pool, backgrounds, CLASSES[i % len(CLASSES)])
            name = f"{i:04d}"
            _write_jpeg(root / split / "images" / f"{name}.jpg", image)
            write_voc_xml(root / split / "annotations" / f"{name}.xml",
                          Annotation(f"{name}.jpg", IMAGE_WIDTH, IMAGE_HEIGHT, boxes, labels))
            for label in labels:
                objects[label] += 1
        splits[split] = {"images": counts[split], "objects": objects}
    summary = {**manifest, "splits": splits}
    write_json(root / MANIFEST, summary)
    return summary
