"""Merging MultiBox into selective search (provenance, dedup), the comparison report, and the CLI wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from incdet.cli import main
from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.engine.steps import Loader
from incdet.io import collect_images, read_image, write_image
from incdet.multibox.multibox_file import MultiBoxSpec, save_multibox
from incdet.multibox.network import MultiBoxNet
from incdet.multibox.propose import MultiBoxSettings
from incdet.multibox.proposer import Proposer
from incdet.pipeline import DEFAULT_MULTIBOX, default_multibox
from incdet.proposals.files import load_proposals, save_proposals
from incdet.proposals.merge import merge_proposals
from incdet.proposals.report import format_report, proposal_stats, report_counts
from incdet.structures import BOTH, MULTIBOX, Proposals
from incdet.structures import SELECTIVE_SEARCH as SS
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS

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
    assert merged.source_names() == [BOTH, MULTIBOX, MULTIBOX, SS, SS]
    assert merged.counts() == {SS: 2, MULTIBOX: 2, BOTH: 1, "total": 5}
    # A superset of selective search: nothing it proposed is lost.
    assert {tuple(b) for b in SS_BOXES.tolist()} <= {tuple(b) for b in merged.boxes.tolist()}


def test_merge_threshold_decides_what_counts_as_a_repeat() -> None:
    multibox = np.array([[101, 101, 151, 151]], np.float32)
    assert merge_proposals(SS_BOXES, multibox, dedup_iou=0.95).counts()[MULTIBOX] == 1
    assert merge_proposals(SS_BOXES, multibox, dedup_iou=0.9).counts()[BOTH] == 1


def test_merge_with_an_empty_side() -> None:
    only_ss = merge_proposals(SS_BOXES, np.zeros((0, 4)))
    assert only_ss.source_names() == [SS] * 3
    only_mb = merge_proposals(np.zeros((0, 4)), SS_BOXES)
    assert only_mb.source_names() == [MULTIBOX] * 3 and len(only_mb.boxes) == 3
    with pytest.raises(ValueError, match="dedup_iou"):
        merge_proposals(SS_BOXES, SS_BOXES, dedup_iou=0)


GT = [np.array([[0, 0, 50, 50], [100, 60, 140, 120]], np.float32), np.array([[10, 10, 30, 30]], np.float32)]


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


def test_unreadable_image_is_skipped_with_a_one_line_reason(tiny_set, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    good, bad = (Loader(stored=load_proposals(tiny_set["ss"]), stored_name="ss.json")(r) for r in collect_images([tiny_set["images"] / "0.png", broken]))
    assert good.error is None and len(good.proposals) == 1
    assert bad.error.startswith(f"{broken}: not a readable image") and "\n" not in bad.error


def test_detect_uses_the_shipped_multibox_only_by_default_for_the_demo_model() -> None:
    assert default_multibox(["mine.pt"], "net.pt") == Path("net.pt")
    assert default_multibox(DEMO_REGION_MODELS, None) is None
    assert default_multibox(["mine.pt"], DEFAULT_MULTIBOX) is None
    expected = DEMO_MULTIBOX if DEMO_MULTIBOX.is_file() else None
    assert default_multibox(DEMO_REGION_MODELS, DEFAULT_MULTIBOX) == expected
    assert default_multibox(DEMO_REGION_MODELS, "default") == Path("default")  # a file of that name is a file, not the default


def test_multibox_boxes_are_merged_into_given_proposals(tiny_set) -> None:
    paths = sorted(tiny_set["images"].glob("*.png"))
    images = [read_image(p) for p in paths]
    cached = [Proposals.from_boxes(load_proposals(tiny_set["ss"])[p.name]) for p in paths]
    merged = Proposer(multibox=tiny_set["checkpoint"], multibox_settings=MultiBoxSettings(top_n=2), device="cpu")(images, cached)
    assert all(1 < len(m) <= 3 for m in merged)  # one cached box + at most 2 MultiBox boxes
    assert all(m.counts()["selective_search"] + m.counts()["both"] == 1 for m in merged)
    assert [len(p) for p in Proposer(device="cpu")(images, cached)] == [1, 1]  # no network: the given boxes as they are
