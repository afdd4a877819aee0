"""Detection speed and memory; every comparison runs its two paths side by side in this run.

    flock /tmp/incdet-bench.lock python bench/detect.py [--images demo/test/images] [--sections ...]
    flock /tmp/incdet-bench.lock python bench/detect.py --device cuda --sections throughput

Sections (default: all but throughput):
- ``stages``: seconds per image by stage, and batched vs naive per-crop classification. The naive
  baseline is what an R-CNN re-implementation often does: cut each context-padded crop with numpy,
  ``cv2.resize`` it and run the network on one crop at a time (same model, same boxes).
- ``streaming``: images/s of ``incdet detect`` (decode once, search in workers while the main
  process classifies, results streamed to the work folder) against the stage-by-stage loop it
  replaced (kept below, compactly, as the baseline), default path (selective search + MultiBox);
  and against itself with ``--runtime torch``, the default before onnxruntime ran the classifiers.
- ``commit``: images/s of ``incdet detect`` now against ``incdet detect`` at ``--commit`` (a git
  worktree of it), each run as a process of its own, taking turns.
- ``rss``: peak RSS of ``incdet detect --proposals STORE`` on 10,000 and on 100,000 tiny images
  (one stored proposal each, so the per-image bookkeeping is what could grow), each in a
  subprocess of its own.
- ``ray``: images/s of ``--engine ray`` on a local Ray instance against the local engine, same cores.
- ``throughput``: warp+classify (``Pipeline.classify``) crops/s and images/s of the ensemble ``incdet
  detect`` runs (``--ensemble``, default the shipped one) on selective-search proposals of ``--limit``
  images, at ``--precision``, and the share of the card's dense bf16 peak; measured by
  tools/gpu_check.py's :func:`classify_throughput` (warm-up, CUDA events, median of repeats, the peak
  looked up by the card's name and memory), which runs full-size members as its section 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from incdet.boxes import add_context
from incdet.classify.classifier_file import load_region_classifier
from incdet.classify.ensemble import load_ensemble
from incdet.cli import main as incdet
from incdet.devices import resolve_device
from incdet.engine.steps import init_worker
from incdet.errors import InputError
from incdet.io import list_images, read_image, write_json
from incdet.multibox.multibox_file import load_multibox
from incdet.multibox.propose import merge_multibox, predict_images
from incdet.pipeline import Pipeline
from incdet.proposals.selective_search import search_proposals
from incdet.postprocess.coco_results import to_coco_records
from incdet.postprocess.nms import select_detections
from incdet.proposals.selective_search import selective_search
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore
from incdet.regions.warp import warp_image_regions
from incdet.structures import Proposals
from incdet.transforms import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS

_spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).resolve().parent.parent / "tools" / "gpu_check.py")
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)  # its dataclasses look their module up there
_spec.loader.exec_module(gpu_check)  # its device clocks, peak table and warp+classify measurement

SECTIONS = ("stages", "streaming", "commit", "rss", "ray", "throughput")


def naive_scores(image: np.ndarray, boxes: np.ndarray, model: torch.nn.Module, size: int, pad: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-crop loop: integer crop, cv2.resize, normalise, forward one crop at a time on ``device``."""
    padded = add_context(torch.from_numpy(boxes), size, pad).round().int().tolist()
    height, width = image.shape[:2]
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    scores = []
    for x1, y1, x2, y2 in padded:
        # Mean-fill outside the image, as R-CNN does, by padding the cut with the mean colour.
        canvas = np.empty((y2 - y1, x2 - x1, 3), np.float32)
        canvas[:] = mean * 255
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        crop = (cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR) / 255.0 - mean) / std
        with torch.inference_mode():
            scores.append(model(torch.from_numpy(crop).permute(2, 0, 1)[None].to(device)).logits.softmax(1))
    return torch.cat(scores)


def bench_stages(paths: list[Path], model_path: Path, device: torch.device) -> None:
    spec, model = load_region_classifier(model_path, device)
    ensemble = load_ensemble([model_path], device)
    seconds = dict.fromkeys(("proposals", "warp", "classify", "nms"), 0.0)
    batched_s = naive_s = 0.0
    crops_total = 0
    for path in paths:
        image = read_image(path)
        start = time.perf_counter()
        proposals = selective_search(image)
        seconds["proposals"] += time.perf_counter() - start
        boxes = torch.from_numpy(proposals).to(device)
        crops_total += len(boxes)
        # What `incdet detect` runs: the ensemble warps and classifies in batches.
        start = time.perf_counter()
        scores = ensemble([image_to_tensor(image, device)], [boxes])[0]
        gpu_check.synchronize(device)
        classified = time.perf_counter()
        select_detections(Proposals.from_boxes(boxes), scores)
        gpu_check.synchronize(device)
        seconds["nms"] += time.perf_counter() - classified
        batched_s += classified - start
        start = time.perf_counter()  # the warp alone, to split warp+classify into its two stages
        warp_image_regions(image_to_tensor(image, device), boxes, spec.input_size, spec.context_pad)
        gpu_check.synchronize(device)
        warp_s = time.perf_counter() - start
        seconds["warp"] += warp_s
        start = time.perf_counter()
        naive = naive_scores(image, proposals, model, spec.input_size, spec.context_pad, device)
        gpu_check.synchronize(device)
        naive_s += time.perf_counter() - start
        agreement = (naive.argmax(1) == scores.probs.argmax(1)).float().mean().item()
    seconds["classify"] = batched_s - seconds["warp"]
    n = len(paths)
    print(f"device {device}, {n} images, {crops_total / n:.0f} proposals/image, model {spec.arch} w{spec.width:g} @ {spec.input_size}px")
    print("seconds per image by stage: " + ", ".join(f"{k} {v / n:.4f}" for k, v in seconds.items()))
    print(f"batched warp+classify: {crops_total / batched_s:9.1f} crops/s")
    print(f"naive per-crop loop:   {crops_total / naive_s:9.1f} crops/s")
    print(f"speed-up batched / naive: {naive_s / batched_s:.1f}x (target >= 10x); top-1 agreement on the last image {agreement:.3f}")


def _search_file(path: Path) -> Proposals | None:
    """The baseline's worker: decode and search one image (None when it cannot be)."""
    try:
        return search_proposals(read_image(path), SearchSettings(), path)
    except InputError:
        return None


def stage_by_stage(paths: list[Path], out: Path, device: torch.device, workers: int | None = None) -> None:
    """The baseline: ``incdet detect`` as it was before the streaming engine. Selective search of every
    image over a process pool first; then one image at a time: decode it for MultiBox, decode it again
    to classify (one image per ensemble call); every record held in memory, one JSON at the end."""
    ensemble = load_ensemble(DEMO_REGION_MODELS, device)
    _, multibox = load_multibox(DEMO_MULTIBOX, device)
    with ProcessPoolExecutor(workers or os.cpu_count(), mp_context=multiprocessing.get_context("forkserver"),
                             initializer=init_worker) as pool:
        searched = dict(zip(paths, pool.map(_search_file, paths)))
    records = []
    for image_id, path in enumerate(paths):
        if searched[path] is None:
            continue
        (boxes, _), = predict_images(multibox, [read_image(path)])
        proposals = merge_multibox(searched[path], boxes)
        image = read_image(path)
        scores = ensemble([image_to_tensor(image, device)], [proposals.boxes.to(device)])[0]
        detections = select_detections(proposals.to(device), scores).to("cpu")
        records += to_coco_records(detections, image_id, path.name, ensemble.classes)
    write_json(out, records)


def _quietly(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = incdet(argv)
    if code != 0:
        raise RuntimeError(f"incdet {' '.join(argv)} exited {code}: {err.getvalue()[-500:]}")


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _with_threads(threads: int, run) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run()
    finally:
        torch.set_num_threads(before)


def _compare(old: Path, new: Path) -> str:
    """How the two paths' records differ: batches of other sizes change scores in the last bits."""
    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    if [(r["image_id"], r["category_id"], r["bbox"]) for r in a] != [(r["image_id"], r["category_id"], r["bbox"]) for r in b]:
        return f"{len(a)} vs {len(b)} records, boxes or labels differ"
    return f"{len(a)} with equal boxes and labels, scores within {max((abs(x['score'] - y['score']) for x, y in zip(a, b)), default=0):.0e}"


def _detect_at(checkout: Path, folder: Path, out: Path, device: torch.device) -> None:
    """``incdet detect`` of the incdet in ``checkout``, in a process of its own (imports included), with
    this checkout's shipped networks named as files, so both commits run the same ensemble and MultiBox
    (an older commit's own shipped ensemble may be another one)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    models = [arg for path in DEMO_REGION_MODELS for arg in ("--model", str(path))]
    subprocess.run([sys.executable, "-m", "incdet.cli", "detect", str(folder), "--out", str(out), "--device", str(device),
                    *models, "--multibox", str(DEMO_MULTIBOX)], env=env, cwd=checkout, check=True, capture_output=True)


def bench_commit(folder: Path, device: torch.device, commit: str, repeats: int = 1) -> None:
    """``incdet detect`` as it is against ``incdet detect`` at ``commit`` (a git worktree), each in a
    process of its own, taking turns: the default path's images/s (selective search + MultiBox, the
    shipped ensemble), before and after."""
    repo = Path(__file__).resolve().parent.parent
    n = len(list_images(folder))
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), commit], cwd=repo, check=True, capture_output=True)
        try:
            for i in range(repeats):
                for name, checkout in ((f"at {commit}", old), ("now", repo)):
                    out = Path(tmp) / f"{name.replace(' ', '_')}{i}.json"
                    seconds[name] = min(seconds.get(name, float("inf")), _timed(lambda: _detect_at(checkout, folder, out, device)))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=repo, check=True, capture_output=True)
        same = _compare(Path(tmp) / f"at_{commit}0.json", Path(tmp) / "now0.json")
    print(f"{n} images, incdet detect (default path, a process each, imports included), {os.cpu_count()} cores, best of {repeats}:")
    for name, value in seconds.items():
        print(f"  {name:20s} {n / value:6.2f} images/s ({value:.1f} s)")
    print(f"  speed-up now / at {commit}: {seconds[f'at {commit}'] / seconds['now']:.2f}x (target >= 2x); records: {same}")


def bench_streaming(folder: Path, device: torch.device, repeats: int = 1) -> None:
    """The baseline runs with torch's default threads (as it shipped) and with one (what helps on a loaded
    machine, where OpenMP's threads wait for each other); the better of the two is compared."""
    paths = list_images(folder)
    threads = torch.get_num_threads()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            f"stage-by-stage, {threads} torch threads": lambda i: stage_by_stage(paths, Path(tmp) / f"old{i}.json", device),
            "stage-by-stage, 1 torch thread": lambda i: _with_threads(1, lambda: stage_by_stage(paths, Path(tmp) / f"one{i}.json", device)),
            "streaming, --runtime torch": lambda i: _quietly(["detect", str(folder), "--out", str(Path(tmp) / f"torch{i}.json"),
                                                              "--device", str(device), "--runtime", "torch"]),
            "streaming": lambda i: _quietly(["detect", str(folder), "--out", str(Path(tmp) / f"new{i}.json"), "--device", str(device)]),
        }
        for i in range(repeats):  # taking turns, so load from other jobs hits every path alike
            for name, run in runs.items():
                seconds[name] = min(seconds.get(name, float("inf")), _timed(lambda: run(i)))
        same = _compare(Path(tmp) / "old0.json", Path(tmp) / "new0.json")
        same_as_torch = _compare(Path(tmp) / "torch0.json", Path(tmp) / "new0.json")
    n = len(paths)
    print(f"{n} images, default path (selective search + MultiBox), {os.cpu_count()} cores, best of {repeats}:")
    for name, value in seconds.items():
        print(f"  {name:32s} {n / value:6.2f} images/s ({value:.1f} s)")
    baseline = min(v for k, v in seconds.items() if k.startswith("stage-by-stage"))
    print(f"  speed-up streaming / best stage-by-stage: {baseline / seconds['streaming']:.2f}x (target >= 1.3x); records: {same}")
    print(f"  speed-up streaming / streaming with --runtime torch (the default before onnxruntime): "
          f"{seconds['streaming, --runtime torch'] / seconds['streaming']:.2f}x; records: {same_as_torch}")


def _rss_child(folder: str, store: str, out: str) -> None:
    """Run in a subprocess of its own: detect with stored proposals, then report this process's peak RSS."""
    start = time.perf_counter()
    _quietly(["detect", folder, "--proposals", store, "--out", out, "--no-multibox", "--device", "cpu", "--batch-images", "64"])
    peak = {"main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "seconds": time.perf_counter() - start}
    print(json.dumps(peak))


def _tiny_job(root: Path, count: int) -> tuple[Path, Path]:
    """``count`` tiny images (links to one 64x48 PNG, 100 per sub-folder) and a store of one proposal each:
    what the engine keeps per image is then all that grows with ``count``."""
    folder, rng = root / f"images{count}", np.random.default_rng(0)
    source = root / "tiny.png"
    if not source.exists():
        cv2.imwrite(str(source), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    store = ProposalStore(root / f"proposals{count}.db", {"bench": "one random box per image"})
    store._db().execute("PRAGMA synchronous=OFF")  # a bench shortcut: put() commits (and syncs) each row, as a job must
    for i in range(count):
        link = folder / f"{i // 100:04d}" / f"{i:06d}.png"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
        xy = rng.uniform(0, 20, 2)
        store.put(link.relative_to(folder).as_posix(), Proposals.from_boxes(np.hstack([xy, xy + rng.uniform(10, 40, 2)])[None]))
    store.close()
    return folder, store.path


def bench_rss(counts: tuple[int, ...] = (10_000, 100_000)) -> None:
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            images, store = _tiny_job(Path(tmp), count)
            child = subprocess.run([sys.executable, __file__, "--rss-child", str(images), str(store), str(Path(tmp) / f"d{count}.json")],
                                   capture_output=True, text=True, check=True)
            peaks[count] = json.loads(child.stdout.strip().splitlines()[-1])
    for count, peak in peaks.items():
        print(f"  {count:6d} images: peak RSS main process {peak['main_mb']:7.1f} MB, largest worker {peak['workers_mb']:7.1f} MB, "
              f"{count / peak['seconds']:6.1f} images/s")
    low, high = peaks[counts[0]]["main_mb"], peaks[counts[-1]]["main_mb"]
    print(f"  peak RSS {counts[-1]} / {counts[0]} images: {high / low:.3f} (target: within 15 %, <= 1.15)")


def _cold_local(argv: list[str]) -> None:
    """``incdet ARGV`` in this process with the local engine's fork server started anew, as in a job of
    its own: one left running by an earlier run would spare this run the fork server's imports, as
    nothing spares Ray's actors theirs."""
    multiprocessing.forkserver._forkserver._stop()  # private, "used by unit tests": stdlib has no public stop
    _quietly(argv)


def bench_ray(folder: Path, repeats: int = 1) -> None:
    """Taking turns: the local engine, then a fresh local Ray instance (started and shut down around
    its run, so Ray's idle processes never slow the local engine); the best of ``repeats`` each. Both
    run in this process (imports done), each starting its own processes: the local engine's fork
    server and workers, Ray's actors."""
    import ray

    n = len(list_images(folder))
    local, on_ray, init = float("inf"), float("inf"), 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            local = min(local, _timed(lambda: _cold_local(["detect", str(folder), "--out", f"{tmp}/local.json", "--device", "cpu"])))
            init = _timed(lambda: ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False, log_to_driver=False))
            try:
                on_ray = min(on_ray, _timed(lambda: _quietly(["detect", str(folder), "--out", f"{tmp}/ray.json", "--engine", "ray"])))
            finally:
                ray.shutdown()
        same = Path(f"{tmp}/local.json").read_bytes() == Path(f"{tmp}/ray.json").read_bytes()
    print(f"{n} images, default path, {os.cpu_count()} cores, best of {repeats}: local engine {n / local:.2f} images/s ({local:.1f} s), "
          f"Ray engine {n / on_ray:.2f} images/s ({on_ray:.1f} s; ray.init {init:.1f} s more); "
          f"Ray / local {local / on_ray:.2f}x (target >= 0.9x); byte-identical JSON: {same}")


def bench_throughput(paths: list[Path], models: list[Path], device: torch.device, precision: str = "auto",
                     repeats: int = 5) -> dict[str, float | None]:
    """Warp+classify throughput of ``models`` (the ensemble ``incdet detect --model ...`` would run) on
    the selective-search proposals of ``paths``, all images in one ``Pipeline.classify`` call."""
    pipeline = Pipeline(models, multibox=None, device=str(device), precision=precision)
    images = [read_image(path) for path in paths]
    proposals = pipeline.propose(images)
    result = gpu_check.classify_throughput(pipeline, images, proposals, repeats)
    name, memory = gpu_check.device_card(device)
    members = ", ".join(f"{spec.arch} w{spec.width:g} @ {spec.input_size} px" for spec in pipeline.ensemble.specs)
    print(f"{name} ({memory:.0f} GiB), {pipeline.precision}: {members}; {len(images)} images, "
          f"{sum(len(p) for p in proposals) / len(images):.0f} proposals/image, {result['flops_per_crop'] / 1e9:.3f} GFLOP/crop: "
          f"{result['crops_per_s']:.0f} crops/s, {result['images_per_s']:.2f} images/s, {gpu_check.describe_share(result)} "
          f"(median of {repeats} calls after a warm-up)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("demo/test/images"))
    parser.add_argument("--model", type=Path, default=DEMO_REGION_MODELS[0], help="the region classifier of the stages section")
    parser.add_argument("--ensemble", type=Path, nargs="+", default=list(DEMO_REGION_MODELS),
                        help="the region classifiers of the throughput section (default: the shipped ensemble)")
    parser.add_argument("--precision", default="auto", help="throughput: auto, fp32, bf16 or fp16 (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=10, help="images for the stages and throughput sections (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: %(default)s)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=[s for s in SECTIONS if s not in ("throughput", "commit")])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each streaming, commit and ray path, best kept (default: %(default)s)")
    parser.add_argument("--commit", default="450022a", help="commit: the incdet to compare with (default: %(default)s, "
                        "the last one before onnxruntime ran the classifiers)")
    parser.add_argument("--rss-images", type=int, nargs=2, default=[10_000, 100_000], metavar=("FEW", "MANY"),
                        help="rss: the two job sizes compared (default: %(default)s)")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return _rss_child(*args.rss_child)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    for section in args.sections:
        print(f"== {section}")
        if section == "stages":
            bench_stages(list_images(args.images)[: args.limit], args.model, device)
        elif section == "streaming":
            bench_streaming(args.images, device, args.repeats)
        elif section == "commit":
            bench_commit(args.images, device, args.commit, args.repeats)
        elif section == "rss":
            bench_rss(tuple(args.rss_images))
        elif section == "ray":
            bench_ray(args.images, args.repeats)
        else:
            bench_throughput(list_images(args.images)[: args.limit], args.ensemble, device, args.precision)


if __name__ == "__main__":
    main()
