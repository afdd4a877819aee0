"""The evaluator against numbers worked out by hand on small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from detection_records import det

from incdet.data.records import Annotation
from incdet.evaluate import evaluate_detections
from incdet.evaluate.ap import (
    average_precision,
    interpolated_precision,
    precision_recall,
)
from incdet.evaluate.matching import (
    FALSE_POSITIVE,
    IGNORED,
    TRUE_POSITIVE,
    iou_thresholds,
    paired_iou,
)


def test_all_point_ap_of_a_hand_made_curve():
    # 4 objects; ranked detections TP FP TP FP TP: recall .25 .25 .5 .5 .75, precision 1 .5 2/3 .5 .6
    precision, recall = precision_recall(np.array([1, 0, 1, 0, 1], bool), 4)
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3, 0.5, 0.6])
    np.testing.assert_allclose(interpolated_precision(precision), [1, 2 / 3, 2 / 3, 0.6, 0.6])
    # area: .25 * 1 + .25 * 2/3 + .25 * .6 (the envelope, not the raw dip to .5)
    assert average_precision(recall, precision) == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6)


def test_ap_edge_cases():
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0  # objects but no detections
    precision, recall = precision_recall(np.ones(3, bool), 3)
    assert average_precision(recall, precision) == 1.0
    precision, recall = precision_recall(np.zeros(2, bool), 0)
    assert np.isnan(recall).all()


def test_small_object_thresholds():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 30, 30], [5, 5, 105, 105], [0, 0, 1, 1]], float)
    expected = [100 / 400, 400 / 900, 0.5, 0.5, 1 / 121]  # min(0.5, wh / ((w+10)(h+10)))
    np.testing.assert_allclose(iou_thresholds(boxes, 0.5, True), expected)
    np.testing.assert_allclose(iou_thresholds(boxes, 0.5, False), 0.5)


def test_paired_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(paired_iou(a, b), [1.0, 50 / 150, 0.0, 0.0])


def test_hand_computed_map_two_classes():
    gts = [Annotation("a.jpg", 100, 100, [[10, 10, 50, 50], [60, 60, 90, 90]], ["cat", "dog"]),
           Annotation("b.jpg", 100, 100, [[0, 0, 40, 40], [50, 50, 90, 90]], ["cat", "cat"])]
    dets = [det("a.jpg", "cat", 10, 10, 50, 50, 0.9),   # TP
            det("a.jpg", "cat", 12, 10, 50, 50, 0.8),   # duplicate of the same cat: FP
            det("b.jpg", "cat", 0, 0, 40, 40, 0.7),     # TP
            det("b.jpg", "cat", 60, 0, 99, 30, 0.6),    # nothing there: FP
            det("a.jpg", "dog", 60, 60, 90, 90, 0.5)]   # TP
    result = evaluate_detections(gts, dets, ["cat", "dog"])
    cat, dog = result.classes
    # cat: 3 objects; TP FP TP FP -> precision 1 .5 2/3 .5, recall 1/3 1/3 2/3 2/3
    assert cat.ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert (cat.num_gt, cat.num_dets, cat.num_tp) == (3, 4, 2)
    assert dog.ap == 1.0
    assert result.mean_ap == pytest.approx((cat.ap + 1.0) / 2)
    assert result.detection_status.tolist() == [1, 0, 1, 0, 1]


def test_matching_rules():
    gts = [Annotation("a.jpg", 200, 200, [[0, 0, 100, 100], [20, 0, 120, 100], [150, 150, 190, 190]],
                      ["cat", "cat", "cat"], [False, False, True])]
    dets = [det("a.jpg", "cat", 0, 0, 100, 100, 0.9),       # best IoU with object 0: TP on 0
            det("a.jpg", "cat", 0, 0, 100, 100, 0.8),       # 0 is used; IoU .667 with object 1: TP on 1 (ILSVRC)
            det("a.jpg", "cat", 0, 0, 100, 100, 0.7),       # both used: FP
            det("a.jpg", "cat", 150, 150, 190, 190, 0.6),   # on the difficult object: ignored
            det("a.jpg", "cat", 150, 150, 190, 190, 0.5)]   # difficult objects absorb any number: ignored
    result = evaluate_detections(gts, dets, ["cat"])
    assert result.detection_status.tolist() == [TRUE_POSITIVE, TRUE_POSITIVE, FALSE_POSITIVE, IGNORED, IGNORED]
    assert result.classes[0].num_gt == 2 and result.classes[0].num_dets == 3
    assert result.classes[0].ap == 1.0


def test_iou_ties_between_objects_go_to_the_first_in_annotation_order():
    # the detection overlaps both objects equally; the first listed one is taken, so the
    # second detection (which only overlaps object 1 well enough) still finds object 1 free
    gts = [Annotation("a.jpg", 300, 100, [[0, 0, 100, 100], [50, 0, 150, 100]], ["cat", "cat"])]
    dets = [det("a.jpg", "cat", 25, 0, 125, 100, 0.9), det("a.jpg", "cat", 50, 0, 150, 100, 0.8)]
    assert evaluate_detections(gts, dets, ["cat"]).detection_status.tolist() == [1, 1]


def test_iou_exactly_at_the_threshold_counts():
    gts = [Annotation("a.jpg", 100, 100, [[0, 0, 40, 40]], ["cat"])]
    dets = [det("a.jpg", "cat", 0, 0, 40, 20, 0.9)]  # IoU = 800 / 1600 = 0.5 exactly
    assert evaluate_detections(gts, dets, ["cat"], small_object_rule=False).detection_status.tolist() == [1]


def test_small_object_rule_accepts_a_loose_box_on_a_tiny_object():
    gts = [Annotation("a.jpg", 100, 100, [[10, 10, 15, 15]], ["ant"])]  # 5x5: threshold 25/225 = 0.111
    dets = [det("a.jpg", "ant", 9, 9, 18, 18, 0.9)]  # IoU 25/81 = 0.31
    assert evaluate_detections(gts, dets, ["ant"]).classes[0].ap == 1.0
    assert evaluate_detections(gts, dets, ["ant"], small_object_rule=False).classes[0].ap == 0.0


def test_class_without_ground_truth_is_not_in_the_mean():
    gts = [Annotation("a.jpg", 100, 100, [[0, 0, 50, 50]], ["cat"])]
    dets = [det("a.jpg", "cat", 0, 0, 50, 50, 0.9), det("a.jpg", "dog", 0, 0, 50, 50, 0.8)]
    result = evaluate_detections(gts, dets, ["cat", "dog", "emu"])
    assert [c.num_dets for c in result.classes] == [1, 1, 0]
    assert math.isnan(result.classes[1].ap) and math.isnan(result.classes[2].ap)
    assert result.mean_ap == 1.0 and len(result.evaluated_classes) == 1


def test_blacklisted_pairs_do_not_count():
    gts = [Annotation("a.jpg", 100, 100, [[0, 0, 50, 50], [50, 50, 100, 100]], ["cat", "dog"])]
    dets = [det("a.jpg", "cat", 60, 60, 90, 90, 0.9), det("a.jpg", "dog", 50, 50, 100, 100, 0.8)]
    result = evaluate_detections(gts, dets, ["cat", "dog"], ignored={"a.jpg": frozenset({"cat"})})
    assert result.detection_status.tolist() == [IGNORED, TRUE_POSITIVE]
    assert result.classes[0].num_gt == 0 and result.classes[1].ap == 1.0
