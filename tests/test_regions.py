import numpy as np
import torch

from incdet.boxes import add_context
from incdet.data.records import Annotation
from incdet.regions.labels import BACKGROUND, label_proposals
from incdet.regions.warp import default_context_pad, warp_image_regions
from incdet.train.regions.data import (
    ForegroundFractionSampler,
    WarpRegions,
    build_region_table,
    fixed_validation_batches,
)
from incdet.transforms import image_to_tensor


def test_context_pad_scales_with_crop_size():
    assert default_context_pad(224) == 16
    assert default_context_pad(64) == 5


def test_add_context_leaves_the_box_in_the_crop_centre():
    boxes = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    padded = add_context(boxes, output_size=224, context_pad=16)
    # The original box must span 224 - 32 of the 224 warped pixels on each axis.
    assert torch.allclose((boxes[:, 2:] - boxes[:, :2]) / (padded[:, 2:] - padded[:, :2]), torch.tensor(192 / 224))
    assert torch.allclose(padded[:, :2] + padded[:, 2:], boxes[:, :2] + boxes[:, 2:])


def test_warp_fills_the_crop_with_the_box_content():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:40, 20:60] = 200  # a flat patch on black: the warp of its box must be that colour
    tensor = image_to_tensor(image)
    crops = warp_image_regions(tensor, torch.tensor([[20.0, 10.0, 60.0, 40.0]]), 16, 0)
    assert crops.shape == (1, 3, 16, 16)
    inside = tensor[:, 20, 30][:, None, None].expand(3, 14, 14)
    # Border samples lie within half a pixel of the box edge and blend with the black around it.
    assert torch.allclose(crops[0, :, 1:-1, 1:-1], inside, atol=1e-5)
    assert (crops[0, :, 0, :] < inside[:, 0, :1]).all()


def test_outside_the_image_is_filled_with_the_mean():
    tensor = image_to_tensor(np.full((32, 32, 3), 255, np.uint8))
    crop = warp_image_regions(tensor, torch.tensor([[100.0, 100.0, 140.0, 140.0]]), 8, 0)
    assert torch.count_nonzero(crop) == 0  # zero after normalisation = the ImageNet mean colour


def test_label_proposals_follows_best_ground_truth_at_iou_half():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    gt_labels = torch.tensor([3, 1])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 4.9], [21.0, 21.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
    labels, iou = label_proposals(proposals, gt, gt_labels)
    assert labels.tolist() == [3, BACKGROUND, 1, BACKGROUND]
    assert iou[0].item() == 0.5
    empty, _ = label_proposals(proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.tolist() == [BACKGROUND] * 4


def _table():
    image = np.zeros((40, 50, 3), np.uint8)
    ann = Annotation("a.jpg", 50, 40, np.array([[5, 5, 25, 25]], np.float32), ["cat"])
    proposals = np.array([[5, 5, 25, 24], [30, 0, 50, 20], [0, 20, 20, 40]], np.float32)
    return build_region_table([image, image[:30]], [ann, ann], [proposals, proposals[:1]], ["dog", "cat"], 0.5)


def test_region_table_adds_ground_truth_and_labels_it():
    table = _table()
    assert len(table) == 4 + 2
    assert table.labels.tolist() == [2, 0, 0, 2, 2, 2]


def test_sampler_keeps_the_foreground_fraction():
    labels = torch.tensor([1] * 10 + [0] * 90)
    sampler = ForegroundFractionSampler(labels, batch_size=128, fg_fraction=0.25, num_batches=3, seed=0)
    batches = list(sampler)
    assert len(batches) == 3
    for batch in batches:
        assert len(batch) == 128 and sum(labels[i].item() != 0 for i in batch) == 32
    assert list(sampler) != batches  # a new epoch draws new regions


def test_collate_warps_regions_of_differently_sized_images():
    table = _table()
    crops, labels = WarpRegions(table, 16, 2, flip=False)([0, 4, 5])
    assert crops.shape == (3, 3, 16, 16) and labels.tolist() == [2, 2, 2]


def test_validation_batches_are_fixed_and_balanced():
    labels = torch.tensor([1] * 5 + [0] * 100)
    first = fixed_validation_batches(labels, 8, 0.25, seed=1)
    assert first == fixed_validation_batches(labels, 8, 0.25, seed=1)
    chosen = [i for batch in first for i in batch]
    assert len(chosen) == 5 + 15 and len(set(chosen)) == 20
