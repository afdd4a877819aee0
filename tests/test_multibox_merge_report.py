"""Merging MultiBox into selective search (provenance, dedup), the comparison report, and the CLI wiring."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from incdet.cli import main
from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.io import write_image
from incdet.multibox.checkpoint import MultiBoxSpec, save_multibox
from incdet.multibox.network import MultiBoxNet
from incdet.multibox.propose import detect_checkpoint, propose_multibox
from incdet.proposals.files import load_proposals, save_proposals
from incdet.proposals.merge import BOTH, MULTIBOX, SS, merge_proposals
from incdet.proposals.report import format_report, proposal_stats, report_counts
from incdet.weights import DEMO_MULTIBOX

SS_BOXES = np.array([[0, 0, 50, 50], [100, 100, 150, 150], [10, 60, 40, 90]], np.float32)


def test_merge_keeps_every_selective_search_box_and_says_who_proposed_each() -> None:
    multibox = np.array(
        [
            [101, 101, 151, 151],  # repeats SS box 1 (IoU 0.92)
            [200, 0, 250, 40],  # new
            [100, 100, 149, 150],  # repeats SS box 1 too, which is already placed: dropped
            [0, 0, 20, 20],  # overlaps SS box 0 only at IoU 0.16: new
        ],
        np.float32,
    )
    merged = merge_proposals(SS_BOXES, multibox, dedup_iou=0.7)
    np.testing.assert_array_equal(merged.boxes, [SS_BOXES[1], multibox[1], multibox[3], SS_BOXES[0], SS_BOXES[2]])
    assert merged.source.tolist() == [BOTH, MULTIBOX, MULTIBOX, SS, SS]
    assert merged.counts() == {SS: 2, MULTIBOX: 2, BOTH: 1, "total": 5}
    # A superset of selective search: nothing it proposed is lost.
    assert {tuple(b) for b in SS_BOXES} <= {tuple(b) for b in merged.boxes}


def test_merge_threshold_decides_what_counts_as_a_repeat() -> None:
    multibox = np.array([[101, 101, 151, 151]], np.float32)
    assert merge_proposals(SS_BOXES, multibox, dedup_iou=0.95).counts()[MULTIBOX] == 1
    assert merge_proposals(SS_BOXES, multibox, dedup_iou=0.9).counts()[BOTH] == 1


def test_merge_with_an_empty_side() -> None:
    only_ss = merge_proposals(SS_BOXES, np.zeros((0, 4)))
    assert only_ss.source.tolist() == [SS] * 3
    only_mb = merge_proposals(np.zeros((0, 4)), SS_BOXES)
    assert only_mb.source.tolist() == [MULTIBOX] * 3 and len(only_mb.boxes) == 3
    with pytest.raises(ValueError, match="dedup_iou"):
        merge_proposals(SS_BOXES, SS_BOXES, dedup_iou=0)


GT = [np.array([[0, 0, 50, 50], [100, 100, 140, 160]], np.float32), np.array([[10, 10, 30, 30]], np.float32)]


def test_report_coverage_and_best_overlaps_equal_a_hand_computation() -> None:
    proposals = [
        np.array([[0, 0, 50, 40], [200, 200, 210, 210]], np.float32),  # IoU 0.8 with gt 0; gt 1 missed (best 0)
        np.array([[10, 10, 30, 18], [10, 10, 30, 30]], np.float32),  # IoU 0.4, then exact
    ]
    stats = proposal_stats("hand", proposals, GT, [["a", "b"], ["a"]], report_counts(2))
    # gt best overlaps: 0.8, 0.0, 1.0 -> coverage@0.5 = 2/3, ABO = 0.6, MABO = mean(mean(0.8, 1.0), 0.0) = 0.45
    assert stats.coverage == pytest.approx(2 / 3)
    assert stats.abo == pytest.approx(0.6)
    assert stats.mabo == pytest.approx(0.45)
    assert stats.per_image == 2 and stats.most == 2
    # With one box per image the exact box of image 2 is not there yet: only gt 0 (IoU 0.8) is covered.
    assert dict(zip(stats.counts, stats.recall[0.5])) == pytest.approx({1: 1 / 3, 2: 2 / 3})
    assert dict(zip(stats.counts, stats.recall[0.7])) == pytest.approx({1: 1 / 3, 2: 2 / 3})
    text = format_report([stats], num_gt=3, num_images=2)
    assert "| hand |       2.0 |        0.667 | 0.600 | 0.450 |" in text


def write_tiny_multibox(path: Path, priors: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = MultiBoxNet(priors, input_size=64, width=0.125, head_channels=8, hidden=16)
    save_multibox(path, MultiBoxSpec(len(priors), 64, 0.125, 8, 16), net)


@pytest.fixture()
def tiny_set(tmp_path: Path) -> dict[str, Path]:
    """Two images with annotations, cached selective-search boxes and an untrained MultiBox network."""
    images, annotations = tmp_path / "images", tmp_path / "annotations"
    for i, gt in enumerate(GT):
        write_image(images / f"{i}.png", np.full((120, 160, 3), 90 + 40 * i, np.uint8))
        write_voc_xml(annotations / f"{i}.xml", Annotation(f"{i}.png", 160, 120, gt, ["a"] * len(gt)))
    ss = tmp_path / "ss.json"
    save_proposals(ss, {"0.png": np.array([[0, 0, 50, 40]], np.float32), "1.png": np.array([[100, 0, 150, 50]], np.float32)})
    baseline = tmp_path / "baseline.npz"
    save_proposals(baseline, {"0.png": GT[0], "1.png": GT[1]})
    # Untrained, so its boxes are its priors: (0, 0, 0.25, 0.25) x (160, 120) is gt 1 of image 1 up to IoU 0.47.
    checkpoint = tmp_path / "mb.pt"
    write_tiny_multibox(checkpoint, torch.tensor([[0.0, 0.0, 0.25, 0.25], [0.6, 0.8, 0.9, 1.0], [0.4, 0.4, 0.9, 0.9]]))
    return {"images": images, "annotations": annotations, "ss": ss, "baseline": baseline, "checkpoint": checkpoint}


def test_propose_report_compares_the_three_sets_and_writes_plot_and_sources(tiny_set, tmp_path, capsys) -> None:
    out = tmp_path / "out" / "merged.npz"
    argv = [
        "propose", str(tiny_set["images"]), "--proposals", str(tiny_set["ss"]), "--multibox", str(tiny_set["checkpoint"]),
        "--gt", str(tiny_set["annotations"]), "--report", "--baseline", str(tiny_set["baseline"]), "--out", str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    table = text.split("| proposals")[1].split("\n\n")[0].splitlines()[2:]  # the summary table's rows
    rows = {line.split("|")[1].strip(): line for line in table}
    # Selective search: only gt 0 of image 0 (IoU 0.8) of 3 boxes; the baseline holds the ground truth itself.
    assert "0.333" in rows["selective search (ss.json)"].split("|")[3]
    assert "1.000" in rows["baseline (baseline.npz)"].split("|")[3]
    assert {"MultiBox top-200", "merged"} <= set(rows)
    assert (tmp_path / "out" / "merged_recall.png").stat().st_size > 1000
    merged = load_proposals(out)
    sources = json.loads((tmp_path / "out" / "merged.sources.json").read_text())
    for name in ("0.png", "1.png"):
        assert len(sources[name]["source"]) == len(merged[name]) == sources[name]["counts"]["total"]
        assert sources[name]["counts"]["selective_search"] + sources[name]["counts"]["both"] == 1  # the cached SS box is kept
        assert sources[name]["counts"]["multibox"] >= 1


def test_propose_report_needs_ground_truth(tiny_set, tmp_path) -> None:
    argv = ["propose", str(tiny_set["images"]), "--proposals", str(tiny_set["ss"]), "--report", "--out", str(tmp_path / "m.npz")]
    assert main(argv) == 2


def test_propose_refuses_a_checkpoint_that_is_not_multibox(tiny_set, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    argv = ["propose", str(tiny_set["images"]), "--proposals", str(tiny_set["ss"]), "--multibox", str(bad), "--out", str(tmp_path / "m.npz")]
    assert main(argv) == 2
    assert "bad.pt: not an incdet MultiBox checkpoint" in capsys.readouterr().err


def test_unreadable_image_is_skipped_by_multibox(tiny_set, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    run = propose_multibox([tiny_set["images"] / "0.png", broken], tiny_set["checkpoint"])
    assert list(run.proposals) == [tiny_set["images"] / "0.png"]
    assert run.skipped.messages()[0].startswith(f"{broken}: not a readable image")


def test_detect_uses_the_shipped_multibox_only_by_default_for_the_demo_model() -> None:
    assert detect_checkpoint("mine.pt", disabled=False, default_applies=False) == Path("mine.pt")
    assert detect_checkpoint(None, disabled=True, default_applies=True) is None
    assert detect_checkpoint(None, disabled=False, default_applies=False) is None
    expected = DEMO_MULTIBOX if DEMO_MULTIBOX.is_file() else None
    assert detect_checkpoint(None, disabled=False, default_applies=True) == expected


def test_detect_merges_multibox_boxes_into_cached_proposals(tiny_set) -> None:
    from incdet.commands.detect import image_proposals

    paths = sorted(tiny_set["images"].glob("*.png"))
    args = Namespace(proposals=str(tiny_set["ss"]), multibox=str(tiny_set["checkpoint"]), no_multibox=False, model=None,
                     multibox_top_n=2, device="cpu", superpixel_scale=2.0, workers=1)
    boxes, skipped, _ = image_proposals(paths, args)
    assert not skipped and set(boxes) == set(paths)
    assert all(1 < len(b) <= 3 for b in boxes.values())  # one cached box + at most 2 MultiBox boxes
    args.no_multibox, args.multibox = True, None
    boxes, _, _ = image_proposals(paths, args)
    assert all(len(b) == 1 for b in boxes.values())
