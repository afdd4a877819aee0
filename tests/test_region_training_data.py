"""The streamed region data: what one image's item holds, the fixed validation sample, and the batch
warp on the device matching the detector's per-image warp (textured images, so a crop from the wrong
image, box or padding cannot pass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from region_training_data import make_data

from incdet.boxes import decode_deltas
from incdet.data.dataset import load_dataset
from incdet.data.records import Annotation
from incdet.proposals.store import ProposalStore
from incdet.regions.labels import BACKGROUND, label_proposals
from incdet.regions.sampling import sample_regions, validation_regions
from incdet.regions.warp import warp_image_regions
from incdet.structures import Proposals
from incdet.train.regions.crops import warp_batch
from incdet.train.regions.dataset import (
    PackedAnnotations,
    RegionDataset,
    collate_regions,
)
from incdet.train.regions.module import box_regression_loss
from incdet.transforms import image_to_tensor


def test_label_proposals_follows_best_ground_truth_at_iou_half() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 4.9], [21.0, 21.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
    match = label_proposals(proposals, gt, torch.tensor([3, 1]))
    assert match.labels.tolist() == [3, BACKGROUND, 1, BACKGROUND]
    assert match.iou[0].item() == 0.5 and match.gt_index[:3].tolist() == [0, 0, 1]
    empty = label_proposals(proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.labels.tolist() == [BACKGROUND] * 4 and empty.iou.tolist() == [0.0] * 4


def test_sampling_keeps_the_foreground_share_and_validation_is_fixed() -> None:
    labels = torch.tensor([1] * 10 + [0] * 90)
    drawn = [sample_regions(labels, 32, 0.25) for _ in range(3)]
    for chosen in drawn:
        assert len(chosen) == 32 and len(set(chosen.tolist())) == 32 and int((labels[chosen] != 0).sum()) == 8
    assert not all(torch.equal(drawn[0], d) for d in drawn[1:])  # a fresh draw each time
    few = torch.tensor([2] * 3 + [0] * 90)
    assert int((few[sample_regions(few, 32, 0.25)] != 0).sum()) == 3  # Fast R-CNN: the rest is background
    first = validation_regions(labels, 32, 0.25, seed=4)
    assert torch.equal(first, validation_regions(labels, 32, 0.25, seed=4))
    assert int((labels[first] != 0).sum()) == 10 and len(first) == 10 + 30  # all foreground, 3 background per foreground


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_data(tmp_path_factory.mktemp("regions_data"), train=4, val=2)


def _dataset(data: dict[str, Path], **changes) -> tuple[RegionDataset, list[Annotation], list[str]]:
    split = load_dataset(data["train"])
    kwargs = {"fg_iou": 0.5, "bbox_iou": 0.6, "regions_per_image": 16, "fg_fraction": 0.25, **changes}
    return RegionDataset(PackedAnnotations(split.image_dir, split.annotations, split.classes),
                         ProposalStore(data["train_store"], readonly=True), **kwargs), split.annotations, split.classes


def test_an_item_adds_the_ground_truth_labels_samples_and_gives_regression_targets(data) -> None:
    sampled, annotations, classes = _dataset(data)
    item = sampled[1]
    assert len(item.boxes) == 16 and int((item.labels != BACKGROUND).sum()) == 4
    item = _dataset(data, regions_per_image=1000)[0][1]  # room for every region of the image
    ann = annotations[1]
    assert item.image.dtype == torch.uint8 and item.image.shape == (3, ann.height, ann.width)
    gt = torch.as_tensor(ann.boxes)
    assert len(item.boxes) == 60 + 1 and (item.boxes == gt).all(dim=1).any()  # the ground truth joins the proposals
    expected = label_proposals(item.boxes, gt, torch.tensor([classes.index(ann.labels[0]) + 1]), 0.5)
    assert torch.equal(item.labels, expected.labels)
    assert torch.equal(item.regress, (expected.labels != BACKGROUND) & (expected.iou >= 0.6)) and item.regress.any()
    # Targets take each regressed region onto its ground truth, and are zero elsewhere.
    decoded = decode_deltas(item.targets[item.regress], item.boxes[item.regress])
    torch.testing.assert_close(decoded, gt.expand(len(decoded), 4), atol=1e-3, rtol=0)
    assert (item.targets[~item.regress] == 0).all()


def test_validation_items_are_the_same_every_time(data) -> None:
    dataset = _dataset(data, validation_seed=0)[0]
    first, again = dataset[0], dataset[0]
    assert torch.equal(first.boxes, again.boxes) and torch.equal(first.labels, again.labels)
    fg = int((first.labels != BACKGROUND).sum())
    assert fg > 4 and len(first.labels) == fg + 3 * fg  # every foreground region, 3 background each


def test_batch_warp_on_the_device_equals_the_detectors_per_image_warp(data) -> None:
    dataset = _dataset(data)[0]
    small = dataset[0]
    # A second, larger textured image, so the first one is padded in the batch.
    rng = np.random.default_rng(0)
    big_image = torch.from_numpy(rng.integers(0, 255, (3, 90, 120), dtype=np.uint8))
    big_boxes = torch.tensor([[80.0, 50.0, 120.0, 90.0], [0.0, 0.0, 30.0, 20.0]])
    big = small._replace(index=9, image=big_image, boxes=big_boxes, labels=torch.zeros(2, dtype=torch.long),
                         targets=torch.zeros(2, 4), regress=torch.zeros(2, dtype=torch.bool))
    # And another texture of the first one's size, so one roi_align call warps two images of the batch.
    twin_image = torch.from_numpy(rng.integers(0, 255, tuple(small.image.shape), dtype=np.uint8))
    twin = small._replace(index=10, image=twin_image)
    batch = collate_regions([small, big, twin])
    assert batch.images.shape == (3, 3, 90, 120) and batch.sizes.tolist() == [[72, 96], [90, 120], [72, 96]]
    for samples in ((small, big, twin), (small, twin)):  # images of two sizes, and all of one size
        batch = collate_regions(list(samples))
        crops = warp_batch(batch, 32, 4)
        for i, sample in enumerate(samples):
            image = image_to_tensor(sample.image.permute(1, 2, 0).numpy())
            expected = warp_image_regions(image, sample.boxes, 32, 4)
            torch.testing.assert_close(crops[batch.rois[:, 0] == i], expected, atol=1e-5, rtol=0)


def test_skipped_items_leave_only_their_message() -> None:
    from incdet.train.regions.dataset import SkippedImage

    batch = collate_regions([SkippedImage(0, "a.png: broken")])
    assert batch.skipped == ("a.png: broken",) and batch.rois.shape == (0, 5) and len(batch.labels) == 0


def test_box_loss_uses_the_deltas_of_each_regions_own_class() -> None:
    deltas = torch.zeros(3, 4 * 3)
    deltas[0, 8:12] = 1.0  # region 0 (class 2): its class-2 deltas are off by 1 each (smooth L1: 0.5 each)
    deltas[1, 0:4] = 5.0  # region 1: background's deltas, never regressed
    labels, targets = torch.tensor([2, 1, 0]), torch.zeros(3, 4)
    regress = torch.tensor([True, True, False])
    assert box_regression_loss(deltas, labels, targets, regress).item() == pytest.approx(4 * 0.5 / 3)


def test_a_missing_store_entry_is_a_skip_naming_the_store(data, tmp_path) -> None:
    store = ProposalStore(tmp_path / "partial.db", {"x": 1})
    split = load_dataset(data["train"])
    store.put(split.annotations[0].filename, Proposals.from_boxes(np.array([[0, 0, 10, 10]], np.float32)))
    dataset = RegionDataset(PackedAnnotations(split.image_dir, split.annotations, split.classes), store, fg_iou=0.5,
                            bbox_iou=0.6, regions_per_image=8, fg_fraction=0.25)
    assert len(dataset[0].labels) == 2
    skipped = dataset[1]
    assert skipped.message == f"{tmp_path / 'partial.db'}: has no proposals for '001.png'"


def test_training_and_detection_fit_stored_proposals_alike(data, tmp_path) -> None:
    """One region path (issue 23): a store row with boxes inside, far outside and wholly outside its image,
    and a row made for an image of another size, read by region training and by the detector."""
    from incdet.engine.steps import Loader
    from incdet.structures import ImageRecord

    split = load_dataset(data["train"])
    ann = split.annotations[0]
    path, (width, height) = split.image_path(ann), (ann.width, ann.height)
    boxes = torch.tensor([[5.0, 5.0, 40.0, 30.0], [-10.0, 10.0, 30.0, 3 * height], [width + 5.0, 0.0, width + 20.0, 10.0]])
    store = ProposalStore(tmp_path / "p.db", {"search": "test"})
    store.put(ann.filename, Proposals.from_boxes(boxes), width=width, height=height)
    store.put(split.annotations[1].filename, Proposals.from_boxes(boxes[:1]), width=width + 1, height=height)
    store.close()
    readonly = ProposalStore(tmp_path / "p.db", readonly=True)
    training = RegionDataset(PackedAnnotations(split.image_dir, split.annotations[:2], split.classes), readonly,
                             fg_iou=0.5, bbox_iou=0.6, regions_per_image=1000, fg_fraction=0.25)
    detection = Loader(None, readonly, str(readonly.path))
    trained = training[0].boxes.tolist()  # the ground truth joins the proposals
    detected = detection(ImageRecord(path, ann.filename, 0))
    assert detected.error is None and len(detected.warnings) == 2 and len(detected.boxes) == 2
    assert sorted(map(tuple, trained)) == sorted(map(tuple, detected.boxes.tolist() + torch.as_tensor(ann.boxes).tolist()))
    other = split.annotations[1]
    refused = detection(ImageRecord(split.image_path(other), other.filename, 1)).error
    assert refused is not None and "were made for a" in refused and refused == training[1].message


def test_training_reduces_a_huge_image_as_detection_does(data) -> None:
    """The huge-image reduction on both paths (issue 23): an image whose regions are all far larger
    than the crop is box-filtered down before the warp, and training then warps the crops detection does."""
    from incdet.regions.warp import warp_source

    dataset = _dataset(data, validation_seed=0)[0]
    common = {"fg_iou": 0.5, "bbox_iou": 0.6, "regions_per_image": 16, "fg_fraction": 0.25, "validation_seed": 0}
    plain = RegionDataset(dataset.annotations, dataset.store, **common)[0]
    reduced = RegionDataset(dataset.annotations, dataset.store, crop=(2, 0), **common)[0]  # a 2 px crop: every region is huge
    assert reduced.image.shape[1] < plain.image.shape[1] and torch.equal(reduced.targets, plain.targets)
    source = warp_source(plain.image.permute(1, 2, 0).numpy(), plain.boxes, [(2, 0)])
    assert tuple(reduced.image.shape[1:]) == source.image.shape[:2]
    torch.testing.assert_close(reduced.boxes, source.boxes)
    crops = warp_batch(collate_regions([reduced]), 2, 0)
    expected = warp_image_regions(image_to_tensor(source.image), source.boxes, 2, 0)
    torch.testing.assert_close(crops, expected, atol=1e-5, rtol=0)
