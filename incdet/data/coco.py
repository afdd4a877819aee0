"""COCO instances JSON (``images`` / ``annotations`` / ``categories``) as incdet ground truth.

COCO boxes are already continuous ``[x, y, w, h]``, so they only change to xyxy. Crowd
regions (``iscrowd: 1``) and annotations marked ``ignore: 1`` become "difficult" objects:
detections on them are neither right nor wrong. The class list is the category names in
category-id order; ``Dataset.category_ids`` keeps COCO's own ids, which detections refer to.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from incdet.data.checks import box_problem
from incdet.data.records import Annotation, Dataset
from incdet.errors import InputError
from incdet.structures import SkipReport


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a syntax error becomes an InputError naming the line and column."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read ({exc})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _categories(path: Path, data: dict) -> dict[int, str]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise InputError(path, "no 'categories' list")
    ids: dict[int, str] = {}
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise InputError(path, f"categories[{i}] needs an integer 'id' and a string 'name'")
        if cat["id"] in ids or cat["name"] in ids.values():
            raise InputError(path, f"categories[{i}]: id {cat['id']} or name {cat['name']!r} used twice")
        ids[cat["id"]] = cat["name"]
    return dict(sorted(ids.items()))


def read_coco_dataset(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    """Read a COCO instances file; bad images and annotations are skipped and reported."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise InputError(path, "not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)")
    category_ids = _categories(path, data)
    report = SkipReport()
    images: dict[int, dict] = {}
    file_names: set[str] = set()
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(img, dict) or not _is_int(img.get("id")) or not isinstance(img.get("file_name"), str) \
                or not _is_int(img.get("width")) or not _is_int(img.get("height")):
            report.skip("image", path, f"{where}: needs integer 'id', 'width', 'height' and a string 'file_name'")
        elif img["width"] <= 0 or img["height"] <= 0:
            report.skip("image", path, f"{where} ({img['file_name']}): size {img['width']}x{img['height']} is not positive")
        elif img["id"] in images or img["file_name"] in file_names:
            report.skip("image", path, f"{where}: image id {img['id']} or file name {img['file_name']!r} used twice")
        else:
            images[img["id"]] = {"info": img, "boxes": [], "labels": [], "difficult": []}
            file_names.add(img["file_name"])
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        if not isinstance(ann, dict):
            report.skip("object", path, f"{where}: not an object")
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            report.skip("object", path, f"{where}: 'bbox' must be four finite numbers [x, y, w, h]")
            continue
        image = images.get(ann.get("image_id"))
        if image is None:
            report.skip("object", path, f"{where}: image_id {ann.get('image_id')!r} is not a (usable) image")
            continue
        if ann.get("category_id") not in category_ids:
            report.skip("object", path, f"{where}: unknown category_id {ann.get('category_id')!r}")
            continue
        x, y, w, h = bbox
        box = [x, y, x + w, y + h]
        problem = box_problem(box, image["info"]["width"], image["info"]["height"])
        if problem is not None:
            report.skip("object", path, f"{where} on {image['info']['file_name']}: bbox {bbox}: {problem}")
            continue
        image["boxes"].append(box)
        image["labels"].append(category_ids[ann["category_id"]])
        image["difficult"].append(bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0)))
    annotations = [Annotation(im["info"]["file_name"], im["info"]["width"], im["info"]["height"],
                              np.array(im["boxes"], np.float32).reshape(-1, 4), im["labels"],
                              np.array(im["difficult"], bool)) for im in images.values()]
    if not annotations:
        raise InputError(path, f"no usable images ({report.summary()})")
    classes = list(category_ids.values())
    return Dataset("coco", classes, annotations, report, Path(image_dir) if image_dir else path.parent, {},
                   category_ids, {}, f"COCO categories of {path.name}")
