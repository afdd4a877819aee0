"""incdet's evaluator against (1) a plain-loop port of the ILSVRC devkit's eval_detection.m and
VOCap.m written here, working in the devkit's inclusive pixel coordinates, and (2) pycocotools' COCOeval at
IoU 0.5, on tricky cases: ties in score, duplicates, empty classes, images without objects,
boxes on the image border, 1-pixel boxes, IoU exactly 0.5, difficult objects.

Against the reference the APs must be equal (to float rounding) for every class with objects; for a
class without, the port returns what the devkit does (0 without detections, NaN with, nothing past
the last class with an object) and incdet NaN, on purpose. Against COCOeval the match of
every single detection must be equal, COCOeval's 101-point precision must equal incdet's
curve sampled the same way, and the APs may differ only by the interpolation: at most 1/101
(docs/evaluation.md derives the bound).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pytest
from detection_records import det

from incdet.data.records import Annotation
from incdet.evaluate import evaluate_detections
from incdet.evaluate.ap import interpolated_precision
from incdet.evaluate.coco import (
    coco_class_ap,
    coco_evaluate,
    to_coco_gt,
    to_coco_results,
)

# --- the reference: eval_det.m + VOCap, one loop at a time, inclusive coordinates ---------------

def _devkit_iou(bb: Sequence[float], gt: Sequence[float]) -> float:
    """eval_det.m's overlap of two inclusive [xmin ymin xmax ymax] boxes (widths are +1)."""
    iw = min(bb[2], gt[2]) - max(bb[0], gt[0]) + 1
    ih = min(bb[3], gt[3]) - max(bb[1], gt[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - iw * ih
    return iw * ih / ua


def _voc_ap(rec: list[float], prec: list[float]) -> float:
    """VOCap.m; MATLAB's ``max`` ignores NaN (a precision 0/0 before any counted detection)."""
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = mpre[i + 1] if math.isnan(mpre[i]) else mpre[i] if math.isnan(mpre[i + 1]) else max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if not mrec[i] == mrec[i - 1])


def _divide(a: float, b: float) -> float:
    """MATLAB's a / b: 0/0 is NaN, x/0 is Inf."""
    return a / b if b else (math.nan if a == 0 else math.inf)


def reference_aps(gts: Sequence[Annotation], dets: Sequence[dict], classes: Sequence[str],
                  small_object_rule: bool = True, ignored: dict | None = None) -> list[float]:
    """eval_detection.m's ``ap``: one entry per class up to the last class with an object."""
    ignored = ignored or {}
    image_of = {a.filename: i for i, a in enumerate(gts)}
    per_image: list[list[tuple[float, int, dict]]] = [[] for _ in gts]
    for k, d in enumerate(dets):
        per_image[image_of[d["file_name"]]].append((d["score"], k, d))
    npos = dict.fromkeys(classes, 0)
    ranked = []  # (score, image, input position, class, True / False / None for a blacklisted one)
    for i, ann in enumerate(gts):
        skip = ignored.get(ann.filename, set())
        # continuous [x1, y1, x2, y2) -> the devkit's inclusive [xmin, ymin, xmax, ymax]
        gt_boxes = [[b[0], b[1], b[2] - 1, b[3] - 1] for b in ann.boxes.astype(float).tolist()]
        thr = []
        for b in gt_boxes:
            w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
            thr.append(min(0.5, w * h / ((w + 10) * (h + 10))) if small_object_rule else 0.5)
        for label, difficult in zip(ann.labels, ann.difficult):
            if not difficult and label not in skip:
                npos[label] += 1
        detected = [False] * len(gt_boxes)
        for score, k, d in sorted(per_image[i], key=lambda t: -t[0]):  # stable: ties keep input order
            c = d["category_name"]
            if c in skip:
                ranked.append((score, i, k, c, None))  # tp(j) = fp(j) = 0: stays in the arrays
                continue
            x, y, w, h = d["bbox"]
            bb = [x, y, x + w - 1, y + h - 1]
            ovmax, kmax = -math.inf, -1
            for j, b in enumerate(gt_boxes):
                if ann.labels[j] != c or detected[j] or ann.difficult[j]:
                    continue
                ov = _devkit_iou(bb, b)
                if ov > 0 and ov >= thr[j] and ov > ovmax:
                    ovmax, kmax = ov, j
            if kmax >= 0:
                detected[kmax] = True
                ranked.append((score, i, k, c, True))
            elif not any(ann.difficult[j] and ann.labels[j] == c and 0 < _devkit_iou(bb, b) >= thr[j]
                         for j, b in enumerate(gt_boxes)):  # difficult objects: incdet's VOC extension
                ranked.append((score, i, k, c, False))
    ranked.sort(key=lambda t: (-t[0], t[1], t[2]))
    with_objects = [k for k, c in enumerate(classes) if any(c in a.labels for a in gts)]
    aps = []
    for c in classes[:max(with_objects) + 1] if with_objects else []:  # num_classes = length(num_pos_per_class)
        tp = fp = 0
        rec, prec = [], []
        for _, _, _, cls, is_tp in ranked:
            if cls != c:
                continue
            tp, fp = tp + (is_tp is True), fp + (is_tp is False)
            rec.append(_divide(tp, npos[c]))
            prec.append(_divide(tp, tp + fp))
        aps.append(_voc_ap(rec, prec))
    return aps


# --- comparisons ----------------------------------------------------------------------------

def assert_matches_reference(gts, dets, classes, small_object_rule=True, ignored=None):
    result = evaluate_detections(gts, dets, classes, small_object_rule=small_object_rule, ignored=ignored)
    expected = reference_aps(gts, dets, classes, small_object_rule, ignored)
    for k, c in enumerate(result.classes):
        if c.num_gt:
            assert c.ap == pytest.approx(expected[k], rel=0, abs=1e-12), c.name
            continue
        # on purpose: no AP for a class without objects; the devkit has 0, or NaN if it has detections
        has_dets = any(d["category_name"] == c.name for d in dets)
        assert math.isnan(c.ap) and (k >= len(expected) or (math.isnan(expected[k]) if has_dets else
                                                            expected[k] == 0.0)), c.name
    return result


def assert_matches_coco(gts, dets, classes):
    """Same per-detection matches, same 101-point precision, AP within the interpolation bound."""
    result = evaluate_detections(gts, dets, classes, small_object_rule=False)
    coco_gt = to_coco_gt(gts, classes)
    evaluator = coco_evaluate(coco_gt, to_coco_results(coco_gt, dets, classes), 0.5, max_dets=10_000)
    coco_status = np.zeros(len(dets), np.int8)
    for e in evaluator.evalImgs:
        if e is not None:
            for det_id, matched in zip(e["dtIds"], e["dtMatches"][0]):
                coco_status[det_id - 1] = int(matched > 0)
    np.testing.assert_array_equal(result.detection_status, coco_status)

    rec_thrs = evaluator.params.recThrs
    coco_precision = evaluator.eval["precision"][0, :, :, 0, 0]
    for k, c in enumerate(result.classes):
        if c.num_gt == 0:
            assert (coco_precision[:, k] == -1).all()
            continue
        # COCOeval's sampling of the same curve: the envelope at the first recall >= each threshold
        sampled = np.zeros(len(rec_thrs))
        idx = np.searchsorted(c.recall, rec_thrs, side="left")
        sampled[idx < len(c.recall)] = interpolated_precision(c.precision)[idx[idx < len(c.recall)]]
        np.testing.assert_allclose(sampled, coco_precision[:, k], atol=1e-12)

    ours, coco = np.array([c.ap for c in result.classes]), coco_class_ap(evaluator)
    assert np.array_equal(np.isnan(ours), np.isnan(coco))
    assert np.nanmax(np.abs(ours - coco)) <= 1 / 101 + 1e-12
    return result


# --- the tricky cases -------------------------------------------------------------------------

def case_score_ties():
    gts = [Annotation(f"{i}.jpg", 100, 100, [[10, 10, 60, 60]], ["cat"]) for i in range(3)]
    # equal scores across images and within an image: the order decides the curve
    dets = [det("2.jpg", "cat", 70, 70, 95, 95, 0.5), det("0.jpg", "cat", 10, 10, 60, 60, 0.5),
            det("1.jpg", "cat", 80, 0, 99, 20, 0.5), det("1.jpg", "cat", 10, 10, 60, 60, 0.5),
            det("2.jpg", "cat", 10, 10, 60, 60, 0.4), det("0.jpg", "cat", 0, 70, 30, 99, 0.4)]
    return gts, dets, ["cat"]


def case_duplicates():
    gts = [Annotation("a.jpg", 200, 200, [[0, 0, 100, 100], [30, 0, 130, 100], [150, 150, 200, 200]], ["dog"] * 3)]
    dets = [det("a.jpg", "dog", 0, 0, 100, 100, 0.9), det("a.jpg", "dog", 2, 0, 102, 100, 0.8),
            det("a.jpg", "dog", 1, 1, 101, 101, 0.7), det("a.jpg", "dog", 150, 150, 200, 200, 0.6),
            det("a.jpg", "dog", 151, 151, 199, 199, 0.65)]
    return gts, dets, ["dog"]


def case_empty_classes_and_images():
    gts = [Annotation("a.jpg", 100, 100, [[0, 0, 50, 50]], ["cat"]),
           Annotation("empty.jpg", 100, 100),  # no objects at all: every detection there is wrong
           Annotation("b.jpg", 100, 100, [[20, 20, 80, 80]], ["owl"])]  # owl: objects, no detections
    dets = [det("a.jpg", "cat", 0, 0, 50, 50, 0.9), det("empty.jpg", "cat", 0, 0, 50, 50, 0.95),
            det("empty.jpg", "dog", 0, 0, 50, 50, 0.3), det("a.jpg", "dog", 0, 0, 50, 50, 0.2)]
    return gts, dets, ["cat", "dog", "owl", "yak"]  # dog: detections only; yak: nothing


def case_borders_and_one_pixel_boxes():
    gts = [Annotation("a.jpg", 64, 48, [[0, 0, 64, 48], [0, 0, 1, 1], [63, 47, 64, 48], [30, 20, 31, 21]],
                      ["sky", "dot", "dot", "dot"])]
    dets = [det("a.jpg", "sky", 0, 0, 64, 48, 0.9),      # the whole image, touching all four borders
            det("a.jpg", "dot", 0, 0, 1, 1, 0.8),        # exact 1-pixel box in the corner
            det("a.jpg", "dot", 62, 46, 64, 48, 0.7),    # 2x2 on a 1x1 object: IoU 0.25
            det("a.jpg", "dot", 30.5, 20, 31.5, 21, 0.6),  # half a pixel off: IoU 1/3
            det("a.jpg", "dot", 0, 0, 1, 1, 0.5)]        # duplicate of the corner dot
    return gts, dets, ["sky", "dot"]


def case_exact_threshold():
    gts = [Annotation("a.jpg", 100, 100, [[0, 0, 40, 40], [50, 50, 90, 90]], ["cat", "cat"])]
    dets = [det("a.jpg", "cat", 0, 0, 40, 20, 0.9),  # IoU exactly 0.5
            det("a.jpg", "cat", 50, 50, 90, 69.9, 0.8)]  # just below
    return gts, dets, ["cat"]


def case_random(seed: int, images: int = 40, classes: int = 4):
    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(classes)]
    gts, dets = [], []
    for i in range(images):
        n = int(rng.integers(0, 5))
        xy = rng.integers(0, 150, (n, 2))
        wh = rng.integers(1, 100, (n, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, 200)], 1).astype(float)
        labels = [names[c] for c in rng.integers(0, classes, n)]
        gts.append(Annotation(f"{i:03d}.jpg", 200, 200, boxes, labels))
        for box, label in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 4))):
                x1, y1, x2, y2 = box + rng.normal(0, 4, 4)
                dets.append(det(f"{i:03d}.jpg", label, x1, y1, max(x2, x1 + 0.5), max(y2, y1 + 0.5),
                                round(float(rng.uniform()), 1)))  # one decimal: plenty of ties
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = rng.uniform(0, 180, 2)
            dets.append(det(f"{i:03d}.jpg", names[int(rng.integers(classes))], x1, y1, x1 + rng.uniform(1, 60),
                            y1 + rng.uniform(1, 60), round(float(rng.uniform()), 1)))
    return gts, dets, names


CASES = {"score ties": case_score_ties, "duplicates": case_duplicates,
         "empty classes and images": case_empty_classes_and_images,
         "borders and 1-pixel boxes": case_borders_and_one_pixel_boxes, "IoU exactly 0.5": case_exact_threshold,
         "random 0": lambda: case_random(0), "random 1": lambda: case_random(1), "random 2": lambda: case_random(2)}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("small_object_rule", [True, False])
def test_equals_devkit_reference(name, small_object_rule):
    assert_matches_reference(*CASES[name](), small_object_rule=small_object_rule)


@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_pycocotools(name):
    assert_matches_coco(*CASES[name]())


def test_score_ties_follow_image_then_input_order():
    gts, dets, classes = case_score_ties()
    result = assert_matches_reference(gts, dets, classes)
    # score 0.5: 0.jpg TP, 1.jpg FP, 1.jpg TP (input order within 1.jpg), 2.jpg FP;
    # score 0.4: 0.jpg FP before 2.jpg TP (image order)
    np.testing.assert_allclose(result.classes[0].precision, [1, 1 / 2, 2 / 3, 2 / 4, 2 / 5, 3 / 6])
    assert result.classes[0].ap == pytest.approx(1 / 3 + 1 / 3 * 2 / 3 + 1 / 3 * 1 / 2)


def test_difficult_objects_against_reference():
    gts = [Annotation("a.jpg", 200, 200, [[0, 0, 100, 100], [0, 0, 90, 100], [120, 120, 180, 180]],
                      ["cat", "cat", "cat"], [True, False, True]),
           Annotation("b.jpg", 200, 200, [[10, 10, 60, 60]], ["cat"], [True])]
    dets = [det("a.jpg", "cat", 0, 0, 100, 100, 0.9),  # regular object 1 reachable (IoU .9): TP, not ignored
            det("a.jpg", "cat", 0, 0, 100, 100, 0.85),  # only the difficult one left: ignored
            det("a.jpg", "cat", 120, 120, 180, 180, 0.8),  # difficult: ignored
            det("b.jpg", "cat", 10, 10, 60, 60, 0.7),  # image whose only object is difficult: ignored
            det("b.jpg", "cat", 100, 100, 150, 150, 0.6)]  # FP
    result = assert_matches_reference(gts, dets, ["cat"])
    assert result.detection_status.tolist() == [1, -1, -1, -1, 0]
    assert result.classes[0].ap == 1.0  # one object, found first; the FP comes after


def test_blacklist_against_reference():
    gts, dets, classes = case_random(3)
    ignored = {"001.jpg": frozenset({"c0", "c2"}), "005.jpg": frozenset({"c1"})}
    assert_matches_reference(gts, dets, classes, ignored=ignored)
    # the highest-scoring detection blacklisted (the devkit's precision 0/0 there), and a class
    # whose only objects and detections are blacklisted (the devkit: NaN; incdet: no AP)
    gts = [Annotation("a.jpg", 100, 100, [[0, 0, 50, 50], [60, 60, 90, 90]], ["cat", "dog"]),
           Annotation("b.jpg", 100, 100, [[10, 10, 60, 60]], ["cat"])]
    dets = [det("a.jpg", "cat", 0, 0, 50, 50, 0.9), det("b.jpg", "cat", 10, 10, 60, 60, 0.8),
            det("a.jpg", "dog", 60, 60, 90, 90, 0.7), det("b.jpg", "cat", 0, 0, 20, 20, 0.6)]
    ignored = {"a.jpg": frozenset({"cat", "dog"})}
    result = assert_matches_reference(gts, dets, ["cat", "dog"], ignored=ignored)
    assert result.classes[0].ap == 1.0 and math.isnan(result.classes[1].ap)
    assert math.isnan(reference_aps(gts, dets, ["cat", "dog"], ignored=ignored)[1])
