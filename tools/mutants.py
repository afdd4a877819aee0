"""Break the code on purpose, one way at a time, and check that the test suite notices.

    python tools/mutants.py            # every mutant; a table; exit 1 if any was missed
    python tools/mutants.py --list     # the mutants and the tests that should catch each
    python tools/mutants.py --only nms-iou-0.5 --only ensemble-divided-by-2

Each mutant is one exact source replacement (``old`` must occur exactly once in its file, so a mutant
the code has moved away from fails loudly instead of being "caught" by a test that no longer runs it)
and the few tests that must catch it. For each, the package, its tests and what they read (bench/,
configs/, docs/, pyproject.toml) are copied to a temporary folder, the replacement is applied there,
and ``pytest -x`` runs the mutant's tests with PYTHONPATH on the copy: caught when they fail. First,
the same tests run once on an unmodified copy (``--no-baseline`` skips it): they must pass there, or
a failure would prove nothing. Not part of CI: it runs every targeted test once per mutant.

A hand-written list rather than a mutation-testing package (mutmut, cosmic-ray): their random
operator swaps mostly produce mutants that crash at once; these are the regressions the detector has
to be protected from (issue 17), each aimed at the tests that are meant to catch it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("incdet", "tests", "bench", "configs", "docs", "tools", "pyproject.toml")
TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutant:
    """Replace ``old`` (exactly once) by ``new`` in ``path`` (relative to the repository root); the
    pytest node ids in ``tests`` must then fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


HELD_OUT_TRAINING = "tests/test_demo_pipeline.py::test_short_training_run_classifies_held_out_regions_well_above_the_label_mix"
BATCH_WARP = "tests/test_region_training_data.py::test_batch_warp_on_the_device_equals_the_detectors_per_image_warp"
BBOX_MEAN = "tests/test_bbox_regression.py::test_scores_are_the_mean_softmax_and_boxes_the_mean_over_the_members_with_a_regressor"
ENGINE = "tests/test_engine.py"
GPU_PATHS = "tests/test_gpu_paths.py"
SMALL_OBJECT = "tests/test_evaluate_ap.py::test_small_object_rule_accepts_a_loose_box_on_a_tiny_object"

MUTANTS = (
    # Region training: the classifier learns from the wrong labels.
    Mutant("region-labels-shuffled", "incdet/train/regions/module.py",
           "self._losses(batch, train=True)",
           "self._losses(batch._replace(labels=batch.labels[torch.randperm(len(batch.labels), device=batch.labels.device)]), train=True)",
           (HELD_OUT_TRAINING,)),
    Mutant("region-sampled-labels-shuffled", "incdet/train/regions/dataset.py",
           "labels, iou = match.labels[chosen], match.iou[chosen]",
           "labels, iou = match.labels[chosen[torch.randperm(len(chosen))]] if self.validation_seed is None else match.labels[chosen], match.iou[chosen]",
           (HELD_OUT_TRAINING,)),
    Mutant("foreground-iou-strict", "incdet/regions/labels.py", "best_iou >= fg_iou", "best_iou > fg_iou",
           ("tests/test_region_training_data.py::test_label_proposals_follows_best_ground_truth_at_iou_half",)),
    # Box regression: trained with its loss, mirrored crops' targets mirrored too.
    Mutant("box-regression-loss-dropped", "incdet/train/regions/module.py", "classification + self.bbox_loss_weight * boxes",
           "classification + 0 * boxes",
           ("tests/test_region_training.py::test_box_regression_trained_jointly_moves_proposals_towards_their_ground_truth",)),
    Mutant("mirror-keeps-dx", "incdet/train/regions/crops.py", "dx = torch.where(mirrored, -targets[:, 0], targets[:, 0])",
           "dx = targets[:, 0]", ("tests/test_region_training.py::test_a_mirrored_crops_horizontal_offset_changes_sign",)),
    # Warping: crops from the wrong image, the wrong box, without context.
    Mutant("warp-wrong-image", "incdet/regions/warp.py", "torch.cat([rois[:, :1], add_context(",
           "torch.cat([rois[:, :1].flip(0), add_context(", ("tests/test_warp.py",)),
    Mutant("warp-wrong-box", "incdet/regions/warp.py", "add_context(rois[:, 1:], output_size, context_pad)",
           "add_context(rois[:, 1:].roll(1, 0), output_size, context_pad)", ("tests/test_warp.py",)),
    Mutant("warp-no-context", "incdet/regions/warp.py", "add_context(rois[:, 1:], output_size, context_pad)",
           "add_context(rois[:, 1:], output_size, 0)", ("tests/test_warp.py",)),
    Mutant("train-crops-wrong-image", "incdet/train/regions/crops.py",
           "position[members] = torch.arange(len(members), device=owner.device)",
           "position[members] = torch.arange(len(members), device=owner.device).flip(0)", (BATCH_WARP,)),
    Mutant("train-crops-wrong-box", "incdet/train/regions/crops.py", "batch.rois[rows, 1:]], dim=1)",
           "batch.rois[rows, 1:].roll(1, 0)], dim=1)", (BATCH_WARP,)),
    # Ensembles: every member must warp its own way, from the right image, and the mean divide by the count.
    Mutant("ensemble-first-member-warp", "incdet/classify/ensemble.py", "spec = self.specs[index]", "spec = self.specs[0]",
           ("tests/test_ensemble_members.py",)),
    Mutant("ensemble-divided-by-2", "incdet/classify/ensemble.py", "probs /= len(self.members)", "probs /= 2",
           ("tests/test_ensemble_members.py",)),
    Mutant("ensemble-wrong-image", "incdet/classify/ensemble.py", "crops.append(warp_image_regions(image, ",
           "crops.append(warp_image_regions(images[0], ", ("tests/test_ensemble_members.py",)),
    # The lanes' results must come back in the batches' order, whichever lane finishes first.
    Mutant("lanes-out-of-order", "incdet/classify/ensemble.py", "            if len(pending) > lanes:\n                yield pending.popleft()",
           "            if len(pending) > lanes:\n                yield pending.pop()",
           ("tests/test_onnx_runtime.py::test_in_order_yields_in_order_with_every_lane_busy_and_no_more",)),
    Mutant("ensemble-loads-first-model-only", "incdet/classify/ensemble.py",
           "    loaded = [(path, *load_region_classifier(path, device)) for path in paths]\n",
           "    loaded = [(path, *load_region_classifier(path, device)) for path in paths[:1]]\n",
           ("tests/test_detect_cli.py::test_detect_with_stored_proposals_and_an_ensemble",)),
    # Box regression at inference: each regressing member's deltas decoded on the proposals, the mean over
    # the members that regress, clipped to the image.
    Mutant("bbox-deltas-not-applied", "incdet/classify/ensemble.py", "decode_deltas(deltas, flat[start:stop])",
           "flat[start:stop].repeat(1, outputs)", (BBOX_MEAN,)),
    Mutant("bbox-mean-over-all-members", "incdet/classify/ensemble.py", "moved / self.regressors", "moved / len(self.members)",
           (BBOX_MEAN,)),
    Mutant("bbox-not-clipped", "incdet/classify/ensemble.py", "clip_boxes_to_image(b, tuple(image.shape[-2:]))", "b",
           (BBOX_MEAN,)),
    # Selection: R-CNN's NMS at 0.3, top-k of the best, the score threshold, regressed boxes.
    Mutant("nms-iou-0.5", "incdet/postprocess/nms.py", "RCNN_NMS_IOU = 0.3", "RCNN_NMS_IOU = 0.5", ("tests/test_postprocess.py",)),
    Mutant("nms-iou-0.25", "incdet/postprocess/nms.py", "RCNN_NMS_IOU = 0.3", "RCNN_NMS_IOU = 0.25", ("tests/test_postprocess.py",)),
    Mutant("detector-nms-default-0.5", "incdet/postprocess/nms.py", "nms_iou: float = RCNN_NMS_IOU\n    max_detections",
           "nms_iou: float = 0.5\n    max_detections",
           ("tests/test_postprocess.py",)),
    Mutant("detect-cli-nms-default-0.5", "incdet/commands/detect.py", '"nms_iou": 0.3',
           '"nms_iou": 0.5', ("tests/test_detect_cli.py::test_detect_suppresses_at_rcnns_nms_iou_0_3_by_default",)),
    Mutant("top-k-keeps-the-worst", "incdet/postprocess/nms.py", "[:max_detections]", "[-max_detections:]",
           ("tests/test_postprocess.py",)),
    Mutant("score-threshold-ignored", "incdet/postprocess/nms.py", "class_probs > score_threshold", "class_probs > 0",
           ("tests/test_postprocess.py",)),
    Mutant("regressed-boxes-ignored", "incdet/postprocess/nms.py",
           "candidates = boxes[region] if scores.boxes is None else scores.boxes[region, label + 1]",
           "candidates = boxes[region]", ("tests/test_postprocess.py",)),
    # The default detect path: selective search + MultiBox.
    Mutant("multibox-merge-dropped", "incdet/multibox/proposer.py", "        return self.add_multibox(images, proposals)",
           "        return list(proposals)", ("tests/test_multibox_merge_report.py::test_multibox_boxes_are_merged_into_given_proposals",)),
    Mutant("detect-default-without-multibox", "incdet/commands/detect.py", "(None if args.proposals else DEFAULT_MULTIBOX)",
           "None", ("tests/test_pipeline.py::test_the_default_detect_path_reproduces_the_headline_map",)),
    # The evaluator: ILSVRC's small-object rule min(0.5, wh / ((w + 10)(h + 10))).
    Mutant("small-object-rule-disabled", "incdet/evaluate/evaluator.py",
           "iou_thresholds(gt.boxes[gt_keep], iou_threshold, small_object_rule)",
           "iou_thresholds(gt.boxes[gt_keep], iou_threshold, False)", (SMALL_OBJECT,)),
    Mutant("small-object-tolerance-0", "incdet/evaluate/matching.py", "PIXEL_TOLERANCE = 10.0", "PIXEL_TOLERANCE = 0.0",
           (SMALL_OBJECT,)),
    # GPU paths: training not forced deterministic (roi_align's CUDA fallback), detection under autocast,
    # a resumed run continuing mid-epoch.
    Mutant("training-forced-deterministic", "incdet/train/run_dir.py", "deterministic=cfg.deterministic,", "deterministic=True,",
           (f"{GPU_PATHS}::test_region_training_with_cuda_behaviour_never_reaches_the_unbounded_roi_align",
            f"{GPU_PATHS}::test_multibox_training_with_cuda_behaviour_uses_the_roi_align_kernel")),
    Mutant("detection-autocast-dropped", "incdet/classify/ensemble.py", "with autocast(device, self.precision):",
           'with autocast(device, "fp32"):', (f"{GPU_PATHS}::test_bf16_detection_scores_are_close_to_fp32_but_computed_in_bf16",)),
    Mutant("mid-epoch-resume-restarts-the-epoch", "incdet/train/resume.py", "sampler.start_at(epoch, batches * batch_size)",
           "sampler.start_at(epoch, 0)",
           (f"{GPU_PATHS}::test_a_run_killed_mid_epoch_resumes_where_it_stopped_and_sees_each_image_of_that_epoch_once",)),
    # Batch jobs: resuming skips what is done (and only that), shards split and merge whole, stores are recognised.
    Mutant("resume-redoes-every-group", "incdet/engine/work.py",
           "return all(self._index.has(r.image_id, _stamp(r.path)) for r in group)", "return False",
           (f"{ENGINE}::test_an_image_skipped_for_a_transient_reason_is_retried_by_the_next_run",
            f"{ENGINE}::test_resuming_with_other_settings_is_refused")),
    Mutant("transient-skip-counts-as-done", "incdet/engine/work.py", "not self.retry[image_id] and ", "",
           (f"{ENGINE}::test_an_image_skipped_for_a_transient_reason_is_retried_by_the_next_run",)),
    Mutant("merge-accepts-an-unfinished-shard", "incdet/engine/shards.py", 'if not manifest.get("complete"):', "if False:",
           (f"{ENGINE}::test_merging_refuses_an_unfinished_shard_naming_it",)),
    Mutant("torn-last-line-counts-as-done", "incdet/engine/work.py", "line = json.loads(raw)",
           """line = json.loads(raw if raw.endswith(b"\\n") else raw.split(b', "records"')[0] + b"}")""",
           (f"{ENGINE}::test_a_line_cut_short_by_a_kill_leaves_its_group_to_do",)),
    Mutant("shards-overlap", "incdet/engine/plan.py", "k % shard.count == shard.index - 1", "k % shard.count <= shard.index - 1",
           (f"{ENGINE}::test_two_shards_merged_equal_one_run",)),
    # A Ray CPU actor reads stored proposals on one thread (SQLite), and fills a node with one actor.
    Mutant("ray-store-read-on-many-threads", "incdet/engine/ray_engine.py", "cpus if loader.stored is None else 1", "cpus",
           ("tests/test_ray_cluster.py::test_propose_and_detect_from_a_stored_file_on_the_cluster_equal_the_local_engine",)),
    Mutant("ray-actor-per-core", "incdet/engine/ray_engine.py", "min(MAX_LANES, min(fits, default=1))", "1",
           ("tests/test_ray_cluster.py::test_a_cpu_actor_fills_the_smallest_live_node_up_to_the_lanes_cap",)),
    Mutant("checkpoint-save-keeps-orphans", "incdet/train/run_dir.py", "        remove_orphans(Path(path).parent)\n", "",
           ("tests/test_io.py::test_a_checkpoint_save_clears_every_killed_writers_temporary_file_in_its_folder",)),
    Mutant("object-stamp-missing", "incdet/io.py", "return (info.size, info.mtime_ns) if info.type == fs.FileType.File else None",
           "return None", ("tests/test_object_store.py::test_detections_from_a_bucket_equal_those_from_the_folder_and_a_shard_resumes_by_the_objects_stamps",)),
    Mutant("store-identity-ignores-rows", "incdet/proposals/store.py",
           'digest.update(f"{key}\\t{size}\\t{mtime}\\t{length}\\n".encode())', "pass",
           ("tests/test_proposal_store.py::test_a_store_is_identified_by_its_settings_and_rows_not_its_bytes",)),
    # bench/detect.py: the naive loop's crops must follow the model to its device.
    Mutant("bench-naive-crops-stay-on-cpu", "bench/detect.py", ".permute(2, 0, 1)[None].to(device)", ".permute(2, 0, 1)[None]",
           ("tests/test_bench_detect.py::test_the_naive_loop_runs_on_the_models_device_and_agrees_with_the_batched_warp",)),
)


def check(mutant: Mutant, root: Path = ROOT) -> str | None:
    """Why ``mutant`` cannot be applied to the tree at ``root`` (None when it can)."""
    path = root / mutant.path
    if not path.is_file():
        return f"{mutant.path} does not exist"
    count = path.read_text().count(mutant.old)
    return None if count == 1 else f"its old text occurs {count} times in {mutant.path} (must be exactly once)"


def copy_tree(dest: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, dest / name)


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, float, str]:
    """pytest on ``tests`` in the copy, importing the copy's package: (exit code, seconds, output tail)."""
    env = {**os.environ, "PYTHONPATH": str(copy)}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:warnings", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, f"timed out after {TIMEOUT_S} s"
    return done.returncode, time.perf_counter() - start, (done.stdout + done.stderr)[-2000:]


def imports_the_copy(copy: Path) -> bool:
    """Whether ``import incdet`` in the tests' environment finds the copy (not an installed checkout)."""
    probe = subprocess.run([sys.executable, "-c", "import incdet; print(incdet.__file__)"], cwd=copy,
                           env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True, check=True)
    return Path(probe.stdout.strip()).resolve().is_relative_to(copy.resolve())


def run_mutant(mutant: Mutant | None, tests: tuple[str, ...]) -> tuple[int, float, str]:
    """Apply ``mutant`` (None: the code as it is) to a fresh copy and run ``tests`` there."""
    with tempfile.TemporaryDirectory(prefix="incdet-mutant-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        if not imports_the_copy(copy):
            raise SystemExit("mutants: `import incdet` does not load the temporary copy; nothing would be tested")
        if mutant is not None:
            problem = check(mutant, copy)
            if problem:
                raise SystemExit(f"mutants: {mutant.name}: {problem}")
            path = copy / mutant.path
            path.write_text(path.read_text().replace(mutant.old, mutant.new))
        return run_tests(copy, tests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the mutants and their tests, run nothing")
    parser.add_argument("--only", action="append", metavar="NAME", help="run this mutant only (repeatable)")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unmodified code first")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output tail for every run")
    args = parser.parse_args(argv)
    names = [m.name for m in MUTANTS]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown mutant(s) {', '.join(unknown)} (known: {', '.join(names)})")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    stale = [f"{m.name}: {problem}" for m in chosen if (problem := check(m))]
    if args.list:
        for m in chosen:
            print(f"{m.name:34s} {m.path}\n{'':34s} - {m.old!r}\n{'':34s} + {m.new!r}\n{'':34s} tests: {' '.join(m.tests)}")
        for line in stale:
            print(f"STALE {line}")
        return 1 if stale else 0
    if stale:
        print("stale mutants (fix their old text first):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    if not args.no_baseline:
        union = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        code, seconds, tail = run_mutant(None, union)
        print(f"baseline (unmodified code, {len(union)} test targets): exit {code} in {seconds:.0f} s", flush=True)
        if code != 0:
            print(tail, file=sys.stderr)
            print("mutants: the targeted tests fail on the unmodified code; a mutant 'caught' by them proves nothing", file=sys.stderr)
            return 1
    rows = []
    for m in chosen:
        code, seconds, tail = run_mutant(m, m.tests)
        verdict = {0: "MISSED", 1: "caught"}.get(code, f"ERROR (pytest exit {code})")
        rows.append((m.name, verdict, seconds, m.tests))
        print(f"{m.name:34s} {verdict:8s} {seconds:6.1f} s", flush=True)
        if args.verbose or code not in (0, 1):
            print(tail)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'mutant':{width}s}  {'result':8s}  {'seconds':>7s}  tests")
    for name, verdict, seconds, tests in rows:
        print(f"{name:{width}s}  {verdict:8s}  {seconds:7.1f}  {', '.join(t.split('/')[-1] for t in tests)}")
    caught = sum(r[1] == "caught" for r in rows)
    print(f"\n{caught} of {len(rows)} mutants caught")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
