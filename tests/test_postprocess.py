import pytest
import torch

from incdet.pipeline import SelectionSettings
from incdet.postprocess.coco_results import to_coco_records
from incdet.postprocess.nms import select_detections
from incdet.structures import MULTIBOX, SOURCES, Proposals, RegionScores


def _select(boxes, probs, **kwargs):
    return select_detections(Proposals.from_boxes(boxes), RegionScores(torch.as_tensor(probs)), **kwargs)


def test_per_class_nms_threshold_and_topk():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    # columns: background, cat, dog
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.5, 0.4], [0.97, 0.02, 0.01]])
    dets = _select(boxes, probs, score_threshold=0.05, nms_iou=0.3)
    # box 1 is suppressed as a cat by box 0 but survives as a dog; box 2 is background.
    assert dets.labels.tolist() == [0, 1]
    assert dets.scores.tolist() == pytest.approx([0.8, 0.4])
    assert dets.boxes.tolist() == [[0, 0, 10, 10], [1, 1, 11, 11]]
    assert len(_select(boxes, probs, max_detections=1).scores) == 1
    assert len(_select(boxes, probs, score_threshold=0.9).scores) == 0


def _pair(shift: float) -> torch.Tensor:
    """Two 10x10 boxes, the second ``shift`` px to the right: IoU (10 - shift) / (10 + shift)."""
    return torch.tensor([[0.0, 0, 10, 10], [shift, 0, 10 + shift, 10]])


def test_default_nms_is_rcnns_0_3():
    probs = torch.tensor([[0.1, 0.9], [0.2, 0.8]])  # one class; the first box scores higher
    above, below = _pair(5.2), _pair(5.6)  # IoU 48/152 = 0.316 and 44/156 = 0.282
    assert _select(above, probs).boxes.tolist() == [[0, 0, 10, 10]]  # suppressed at 0.3 (kept at 0.5)
    assert len(_select(below, probs).scores) == 2  # kept at 0.3 (suppressed at 0.25)
    assert SelectionSettings().nms_iou == 0.3  # and the detector's default (what `incdet detect` runs)


def test_top_k_keeps_the_best_scoring_detections_best_first():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    probs = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7], [0.8, 0.2]])  # no overlaps: NMS keeps all
    dets = _select(boxes, probs, max_detections=2)
    assert dets.scores.tolist() == pytest.approx([0.9, 0.7])
    assert dets.boxes.tolist() == [[20, 0, 30, 10], [40, 0, 50, 10]]


def test_regressed_boxes_replace_the_proposal_per_class_and_keep_its_source():
    proposals = Proposals.from_boxes([[0.0, 0, 10, 10]], MULTIBOX)
    probs = torch.tensor([[0.1, 0.6, 0.3]])
    refined = torch.tensor([[[0.0, 0, 10, 10], [1, 1, 9, 9], [2, 2, 12, 12]]])
    dets = select_detections(proposals, RegionScores(probs, refined))
    assert dets.boxes.tolist() == [[1, 1, 9, 9], [2, 2, 12, 12]]
    assert [SOURCES[s] for s in dets.source.tolist()] == [MULTIBOX, MULTIBOX]


def test_no_regions_gives_no_detections():
    dets = _select(torch.zeros(0, 4), torch.zeros(0, 3))
    assert dets.boxes.shape == (0, 4)


def test_coco_records_are_xywh_with_one_based_categories():
    dets = _select(torch.tensor([[2.0, 3, 12, 23]]), torch.tensor([[0.1, 0.0, 0.9]]))
    (record,) = to_coco_records(dets, 7, "x.jpg", ["cat", "dog"])
    assert record == {"image_id": 7, "file_name": "x.jpg", "category_id": 2, "category_name": "dog", "bbox": [2.0, 3.0, 10.0, 20.0], "score": 0.9}
