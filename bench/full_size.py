"""A CPU rehearsal of the ``paper`` recipe at full size (issue 22): time and memory of each step.

    python bench/full_size.py [--members N] [--keep DIR]

It runs ``incdet train detector`` (:class:`incdet.train.detector.DetectorJob`) end to end with the
shipped ``configs/recipes/paper.yaml``, at the recipe's full sizes (width-1 GoogLeNet at 224 px,
Inception-v3 at 299 px, MultiBox at 224 px, 200 classes, batches of 16 images x 8 regions), on a
generated dataset small enough for a CPU:

- 200 classes ``c000``..``c199`` (``classes.txt`` beside the annotation folders), 500x375 JPEG
  images of coloured rectangles and ellipses on noise, 2-4 labelled boxes each, VOC XML; 16 train
  images (one full R-CNN batch: 16 images x 8 regions = 128 regions) and 1 val image;
- ImageNet-like init files: untrained ``build_classifier("googlenet" | "inception_v3", 1000)``
  state dicts (torchvision format), given as ``init=`` (as ``--init-googlenet`` etc. would be);
- the recipe as shipped but, in every member and in MultiBox, ``max_epochs: 2``,
  ``trainer.limit_val_batches: 1``, ``trainer.enable_progress_bar: false`` and
  ``data.num_workers: 2``, and MultiBox's ``init_checkpoint`` an untrained MultiBox of the recipe's
  size over 800 random priors (clustering 800 priors needs 800 distinct training boxes); precision stays ``bf16-mixed`` (``32-true`` only if a bf16 probe fails
  on this CPU, which the output then says). ``--members N`` keeps the first N members (default all 6).

What the table says, per step of the job (plus the bundle's detector loaded and run once):

- ``s/step``: median wall time of the step's training batches (Lightning's ``on_train_batch_start``
  to ``on_train_batch_end``, so forward, backward and optimiser step, data loading excluded);
  ``steps``: how many batches that median is of (2: one batch an epoch, 2 epochs; the first one
  includes warm-up). ``-`` for steps that do not train.
- ``wall s``: wall time of the whole step (set-up, data, validation and checkpoints included).
- ``peak RSS GB``: the largest sum of VmRSS of this process and all its descendants (DataLoader and
  search workers), sampled every 0.2 s from /proc while the step ran. Pages a forked worker shares
  with its parent count once per process, so this is an upper bound of the memory really used.
- ``bundle``: evaluates each member and (with more than one) the ensemble on the val image, on its
  stored proposals, then writes the bundle.
- ``detect``: ``Pipeline.from_bundle(bundle)`` (``load``: its construction) detecting the val image
  once (selective search, MultiBox merge, every member, NMS), after one warm-up call on a 1/4-size
  copy of the image; ``detection s/image`` is that one timed call.
- ``selective search s/image``: the mean of the per-image search seconds the proposal store records
  (each image searched on one core); ``proposals/image``: the mean number stored per image.

Projection to ILSVRC-DET (train 456,567 images, val 20,121) on this machine (``nproc`` cores),
in hours, each computed from the figures above and nothing else:

- selective search = search s/image x (456,567 + 20,121) / cores;
- a member or MultiBox = 456,567 x epochs x s/step / images per measured step / 3600, with the
  recipe's own epochs (members 2, MultiBox 10, not the rehearsal's 2) and images per measured step
  = min(batch images, 16 train images) (members: 16 = one full batch; MultiBox's batch is 32, so
  its measured step holds the 16 images there are) -- i.e. images / batch x epochs x s/step for a
  full batch;
- val detection = detection s/image x 20,121 (``incdet detect`` searches again, so the val images'
  search is counted twice, once in each row).

The GPU columns stay empty: nothing has been measured on a GPU in this project
(tools/gpu_check.py measures training steps/s and detection images/s on one; run it there).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import logging
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
import yaml

from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.io import read_image
from incdet.multibox.multibox_file import save_multibox
from incdet.nets.factory import build_classifier
from incdet.pipeline import Pipeline
from incdet.proposals.store import ProposalStore
from incdet.train.detector import RECIPES, DetectorJob
from incdet.train.multibox.config import MultiBoxModelConfig

ILSVRC_TRAIN, ILSVRC_VAL = 456_567, 20_121
N_CLASSES, N_TRAIN, N_VAL, WIDTH, HEIGHT = 200, 16, 1, 500, 375


# -- data ------------------------------------------------------------------------------------
def _draw_image(rng: np.random.Generator, labels_from: list[str]) -> tuple[np.ndarray, Annotation]:
    """A textured 500x375 RGB image (noise, clutter shapes) with 2-4 labelled solid shapes."""
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    for _ in range(int(rng.integers(6, 12))):  # clutter, not labelled
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 60)), y + int(rng.integers(10, 60))), colour, -1)
    boxes, labels = [], []
    for _ in range(int(rng.integers(2, 5))):
        w, h = int(rng.integers(60, 220)), int(rng.integers(60, 200))
        x1, y1 = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x1, y1), (x1 + w - 1, y1 + h - 1), colour, -1)
        else:
            cv2.ellipse(image, (x1 + w // 2, y1 + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
        stripes = rng.integers(0, 2)  # some texture inside the object
        if stripes:
            for yy in range(y1, y1 + h, 8):
                cv2.line(image, (x1 + w // 4, yy), (x1 + 3 * w // 4, yy), tuple(255 - c for c in colour), 2)
        boxes.append([x1, y1, x1 + w, y1 + h])
        labels.append(str(rng.choice(labels_from)))
    return image, Annotation("", WIDTH, HEIGHT, np.asarray(boxes, np.float32), labels)


def make_dataset(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """``root/{train,val}/{annotations,images}`` and ``root/classes.txt``; returns the annotation folders."""
    rng = np.random.default_rng(seed)
    classes = [f"c{i:03d}" for i in range(N_CLASSES)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    used: list[str] = []
    folders = []
    for split, count in (("train", N_TRAIN), ("val", N_VAL)):
        ann_dir, img_dir = root / split / "annotations", root / split / "images"
        ann_dir.mkdir(parents=True)
        img_dir.mkdir(parents=True)
        for i in range(count):
            image, ann = _draw_image(rng, classes if split == "train" else sorted(set(used)))
            ann.filename = f"{split}{i:03d}.jpg"
            cv2.imwrite(str(img_dir / ann.filename), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            write_voc_xml(ann_dir / f"{split}{i:03d}.xml", ann)
            if split == "train":
                used += ann.labels
        folders.append(ann_dir)
    return folders[0], folders[1]


def make_init_files(folder: Path) -> dict[str, Path]:
    """Untrained ImageNet-shaped (1000-class) torchvision-format state dicts, as the ImageNet downloads are."""
    files = {}
    for arch in ("googlenet", "inception_v3"):
        files[arch] = folder / f"{arch}-untrained.pth"
        torch.save(build_classifier(arch, 1000, width=1.0).state_dict(), files[arch])
    return files


def bf16_works() -> bool:
    """Whether a bf16-mixed (CPU autocast) forward and backward of a conv net runs here."""
    try:
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(torch.randn(2, 3, 16, 16)).float().sum()
        loss.backward()
        return bool(torch.isfinite(loss))
    except Exception:  # noqa: BLE001 - any failure means: fall back
        return False


def make_multibox_init(path: Path, model_keys: dict, seed: int = 0) -> Path:
    """An untrained MultiBox file of the recipe's size over random priors: 800 priors need 800 distinct
    training boxes to cluster, which 16 images of 2-4 boxes lack (ILSVRC-DET has them), so MultiBox
    starts from this ``init_checkpoint`` instead of clustering (same network, same cost per step)."""
    model = MultiBoxModelConfig(**model_keys)
    rng = np.random.default_rng(seed)
    corners = np.sort(rng.uniform(0, 1, (model.num_priors, 2, 2)), axis=1)  # x1 < x2, y1 < y2
    priors = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], 1).astype(np.float32)
    net = model.spec().build(torch.from_numpy(priors), dropout=model.dropout)
    save_multibox(path, model.spec(), net)
    return path


def write_recipe(path: Path, members: int, precision: str) -> dict:
    """The paper recipe, rehearsal-sized (see the module docstring); returns the shipped recipe."""
    shipped = yaml.safe_load((RECIPES / "paper.yaml").read_text())
    recipe = copy.deepcopy(shipped)
    recipe["members"] = recipe["members"][:members]
    if recipe.get("multibox"):
        recipe["multibox"]["init_checkpoint"] = str(make_multibox_init(path.parent / "multibox-init.pt", recipe["multibox"]["model"]))
    for stage in [*recipe["members"], *([recipe["multibox"]] if recipe.get("multibox") else [])]:
        stage["max_epochs"] = 2
        stage["trainer"] = {**stage.get("trainer", {}), "precision": precision, "limit_val_batches": 1, "enable_progress_bar": False}
        stage.setdefault("data", {})["num_workers"] = 2
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return shipped


# -- measuring -------------------------------------------------------------------------------
class Phase:
    """The step now running (set from DetectorJob.run's report), and what was measured per step."""

    def __init__(self) -> None:
        self.name = "setup"
        self.order: list[str] = ["setup"]
        self.batches: dict[str, list[float]] = {}
        self.wall: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self._started = time.perf_counter()

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        self.wall[self.name] = self.wall.get(self.name, 0.0) + now - self._started
        self.name, self._started = name, now
        if name not in self.order:
            self.order.append(name)

    def report(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        match = re.match(r"\[\d+/\d+\] ([^:]+):", message)
        if match:
            self.enter(match.group(1))


class BatchTimer(L.Callback):
    """Wall time of each training batch, filed under the step that is running."""

    def __init__(self, phase: Phase) -> None:
        self.phase, self.start = phase, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.phase.batches.setdefault(self.phase.name, []).append(time.perf_counter() - self.start)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = {int(c) for c in children.read_text().split()}
            except (OSError, ValueError):
                continue
            todo += [k for k in kids if k not in found]
            found |= kids
    return found


class RssSampler(threading.Thread):
    """Every 0.2 s: RSS of this process plus all its descendants; the maximum per step."""

    def __init__(self, phase: Phase) -> None:
        super().__init__(daemon=True)
        self.phase, self.stop = phase, threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            total = sum(_rss_kb(p) for p in {me, *_descendants(me)})
            name = self.phase.name
            self.phase.peak[name] = max(self.phase.peak.get(name, 0), total)
            self.stop.wait(0.2)


# -- the run ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=6, help="keep the first N members of the recipe (default 6: all)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this (new) folder and keep it")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    cores = os.cpu_count() or 1
    began = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="incdet-full-size-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        train_ann, val_ann = make_dataset(work / "data")
        init = make_init_files(work)
        precision = "bf16-mixed" if bf16_works() else "32-true"
        shipped = write_recipe(work / "paper-rehearsal.yaml", args.members, precision)
        archs = {m["model"]["arch"] for m in shipped["members"][:args.members]}
        init = {arch: path for arch, path in init.items() if arch in archs}  # the job refuses an init file no member uses

        phase = Phase()
        sampler = RssSampler(phase)
        sampler.start()
        job = DetectorJob(train_ann, val_ann, work / "job", recipe=work / "paper-rehearsal.yaml", init=init, device="cpu",
                          callbacks=[BatchTimer(phase)])
        bundle = job.run(report=phase.report)

        phase.enter("detect load")
        pipeline = Pipeline.from_bundle(bundle, device="cpu")
        image = read_image(job.val.image_path(job.val.annotations[0]))
        phase.enter("detect warm-up")
        small = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
        pipeline([small])
        phase.enter("detect")
        start = time.perf_counter()
        detections = pipeline([image])
        detect_s = time.perf_counter() - start
        phase.enter("end")
        sampler.stop.set()
        sampler.join()

        counts, seconds = [], []
        for split in ("train", "val"):
            with ProposalStore(job.stores[split], readonly=True) as store:
                for key in store:
                    entry = store.entry(key)
                    counts.append(len(entry.proposals.boxes))
                    if entry.seconds is not None:
                        seconds.append(entry.seconds)
        results = bundle.results.get("val", {})

    total = time.perf_counter() - began
    _print_table(phase, precision, cores, args.members, counts, seconds, detect_s, len(detections[0].boxes) if detections else 0,
                 pipeline.runtime, shipped, job, results, total)
    return 0


def _print_table(phase: Phase, precision: str, cores: int, members: int, counts: list[int], seconds: list[float], detect_s: float,
                 n_detections: int, runtime: str, shipped: dict, job: DetectorJob, results: dict, total: float) -> None:
    gb = lambda kb: f"{kb / 1024**2:.2f}"  # noqa: E731
    print(f"# incdet full-size rehearsal of the paper recipe, {datetime.datetime.now():%Y-%m-%d %H:%M}, {cores} cores "
          f"({torch.get_num_threads()} torch threads), {members} member(s), {N_CLASSES} classes, {N_TRAIN} train + {N_VAL} val "
          f"images of {WIDTH}x{HEIGHT}")
    print(f"precision: {precision}" + ("" if precision == "bf16-mixed" else
                                       " (bf16-mixed failed a probe on this CPU: fell back to 32-true, NOT what the recipe runs)"))
    print()
    print(f"| {'step':<26} | {'s/step':>7} | {'steps':>5} | {'wall s':>8} | {'peak RSS GB':>11} |")
    print(f"|{'-' * 28}|{'-' * 9}|{'-' * 7}|{'-' * 10}|{'-' * 13}|")
    for name in phase.order:
        if name == "end":
            continue
        batches = phase.batches.get(name, [])
        median = f"{statistics.median(batches):.2f}" if batches else "-"
        print(f"| {name:<26} | {median:>7} | {len(batches) if batches else '-':>5} | {phase.wall.get(name, 0):>8.1f} | "
              f"{gb(phase.peak.get(name, 0)):>11} |")
    print()
    search_s = statistics.mean(seconds) if seconds else float("nan")
    print(f"proposals/image (selective search, superpixel_scale {job.recipe.proposals.superpixel_scale}): "
          f"mean {statistics.mean(counts):.0f} (min {min(counts)}, max {max(counts)}, {len(counts)} images)")
    print(f"selective search s/image (one core, as the store records it): {search_s:.2f}")
    print(f"detection s/image (full ensemble of {members} + MultiBox, runtime {runtime}, selective search included): "
          f"{detect_s:.2f} ({n_detections} detections)")
    if results:
        print("bundle val results (untrained nets, so near 0): " + ", ".join(f"{k} {v}" for k, v in results.items()))
    print()

    hours = []
    print("Projection to ILSVRC-DET (train 456,567, val 20,121 images), hours on this machine; formulas in the docstring")
    print()
    print(f"| {'work':<34} | {'this CPU (h)':>12} | 1 GPU | 8 GPUs |")
    print(f"|{'-' * 36}|{'-' * 14}|-------|--------|")
    gpu = "not measured (run tools/gpu_check.py on a GPU)"

    def row(what: str, value: float) -> None:
        hours.append(value)
        print(f"| {what:<34} | {value:>12.1f} | {gpu} | {gpu} |")

    row(f"selective search, {ILSVRC_TRAIN + ILSVRC_VAL:,} images", search_s * (ILSVRC_TRAIN + ILSVRC_VAL) / cores / 3600)
    recipe_members = {m["name"]: m for m in shipped["members"]}
    for name, member in job.members.items():
        batches = phase.batches.get(f"member-{name}", [])
        if not batches:
            continue
        epochs = recipe_members[name].get("max_epochs", member.max_epochs)
        per_step = min(member.data.images_per_batch, N_TRAIN)
        row(f"member {name} ({epochs} ep)", ILSVRC_TRAIN * epochs * statistics.median(batches) / per_step / 3600)
    if job.multibox is not None and phase.batches.get("multibox"):
        epochs = shipped["multibox"].get("max_epochs", job.multibox.max_epochs)
        per_step = min(job.multibox.data.batch_size, N_TRAIN)
        row(f"MultiBox ({epochs} ep)", ILSVRC_TRAIN * epochs * statistics.median(phase.batches["multibox"]) / per_step / 3600)
    row(f"val detection, {ILSVRC_VAL:,} images", detect_s * ILSVRC_VAL / 3600)
    print(f"| {'total':<34} | {sum(hours):>12.1f} | {gpu} | {gpu} |")
    print()
    print(f"rehearsal wall time: {total:.0f} s ({total / 60:.1f} min)")
    if total > 15 * 60:
        slowest = max((n for n in phase.order if n != "end"), key=lambda n: phase.wall.get(n, 0))
        members_s = sum(v for n, v in phase.wall.items() if n.startswith("member-"))
        print(f"OVER the 15-minute budget: the slowest step is {slowest} ({phase.wall.get(slowest, 0):.0f} s); member training "
              f"{members_s:.0f} s in all, bundle (each member and the ensemble evaluated on the 1 val image) "
              f"{phase.wall.get('bundle', 0):.0f} s, detect warm-up + detect "
              f"{phase.wall.get('detect warm-up', 0) + phase.wall.get('detect', 0):.0f} s")


if __name__ == "__main__":
    sys.exit(main())
