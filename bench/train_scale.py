"""Region training at dataset scale: peak memory at 200 vs 2,000 images, steps/s of streaming vs in-RAM.

    flock /tmp/incdet-bench.lock python bench/train_scale.py [--steps 40] [--workdir /tmp/incdet-train-scale]

1. Builds synthetic 500x375 VOC datasets on disk (JPEGs + XML; coloured shapes on noise) of 200 and
   2,000 images with cheap stored proposals (jittered ground-truth boxes plus random boxes, written
   straight into a ProposalStore, so no selective search runs), trains the same number of steps on
   each with ``incdet.train.regions`` (the demo network and batch of configs/demo.yaml: GoogLeNet
   x0.25 at 64 px) and prints the peak RSS of the main process and of the largest DataLoader worker.
   Target: the 2,000-image run within 15 % of the 200-image run.
2. On the demo's training split (``incdet data demo``; the same cheap proposals), steps/s of the
   streaming path vs the old in-RAM path, side by side. The in-RAM path was removed from incdet
   (it decoded every image into a float tensor before the first step: 3.97 MB per 500x375 image);
   a compact copy of it is kept below as the baseline, clearly labelled. Target: streaming not slower.

Each run is its own subprocess (``--child``), so each peak RSS is that run's alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from incdet.data.dataset import load_dataset
from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import FileStamp, ProposalStore
from incdet.structures import Proposals
from incdet.train.config import load_config
from incdet.train.regions.config import RegionTrainConfig

WIDTH, HEIGHT = 500, 375
# The shipped demo recipe's batch: images per step x regions per image (the in-RAM baseline draws as many regions).
DEMO = load_config(Path(__file__).resolve().parent.parent / "configs" / "demo.yaml", RegionTrainConfig)
SHAPES = ("square", "disc", "bar")


def make_synthetic(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` 500x375 JPEGs with 1-3 coloured shapes each, VOC XML beside; returns the annotation folder."""
    annotations = root / "annotations"
    if annotations.is_dir() and len(list(annotations.glob("*.xml"))) == count:
        return annotations
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise = rng.integers(0, 256, (HEIGHT // 25 + 1, WIDTH // 25 + 1, 3), dtype=np.uint8)
        image = cv2.resize(noise, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        boxes, labels = [], []
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(len(SHAPES)))
            w, h = int(rng.integers(40, 200)), int(rng.integers(40, 200))
            if kind == 2:
                h = max(20, w // 4)
            x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if kind == 1:
                cv2.ellipse(image, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
            else:
                cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, -1)
            boxes.append((x, y, x + w, y + h))
            labels.append(SHAPES[kind])
        name = f"{i:05d}.jpg"
        cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        write_voc_xml(annotations / f"{i:05d}.xml", Annotation(name, WIDTH, HEIGHT, np.array(boxes, np.float32), labels))
    return annotations


def write_cheap_proposals(store_path: Path, annotations: Path, settings: SearchSettings = SearchSettings(),
                          per_image: int = 300, seed: int = 0) -> Path:
    """Stand-in proposals in a real store (stamped as current, so training searches nothing): 10
    jittered copies of each ground-truth box plus random boxes, ``per_image`` in all, xyxy pixels."""
    dataset = load_dataset(annotations)
    rng = np.random.default_rng(seed)
    with ProposalStore(store_path, settings.to_dict()) as store:
        for ann in dataset.annotations:
            path = dataset.image_path(ann)
            if store.is_current(ann.filename, path):
                continue
            jittered = []
            for box in ann.boxes:
                size = np.tile(box[2:] - box[:2], 2)
                jittered.append(box + rng.normal(0, 0.12, (10, 4)) * size)
            random = rng.uniform(0, 1, (per_image, 4)) * [ann.width, ann.height, ann.width, ann.height]
            random = np.concatenate([np.minimum(random[:, :2], random[:, 2:]), np.maximum(random[:, :2], random[:, 2:]) + 20], axis=1)
            boxes = np.concatenate(jittered + [random])[:per_image]
            boxes = np.clip(boxes, 0, [ann.width, ann.height, ann.width, ann.height]).astype(np.float32)
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
            store.put(ann.filename, Proposals.from_boxes(boxes), width=ann.width, height=ann.height, stamp=FileStamp.of(path))
    return store_path


# ---- The OLD in-RAM path, removed from incdet (the baseline; not library code) -------------------
def old_in_ram_loader(annotations: Path, store_path: Path, input_size: int, context_pad: int, batch_size: int, steps: int,
                      workers: int):
    """incdet's former region data, compacted: every image decoded into a normalised float tensor
    up front, every proposal labelled once, batches drawn with a fixed foreground share (with
    replacement) and warped in the collate function."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from incdet.io import read_image
    from incdet.regions.labels import label_proposals
    from incdet.regions.warp import warp_regions
    from incdet.transforms import image_to_tensor

    dataset = load_dataset(annotations)
    store = ProposalStore(store_path, readonly=True)
    index = {name: i + 1 for i, name in enumerate(dataset.classes)}
    images, owner, boxes, labels = [], [], [], []
    for i, ann in enumerate(dataset.annotations):
        images.append(image_to_tensor(read_image(dataset.image_path(ann))))
        gt = torch.as_tensor(ann.boxes)
        regions = torch.cat([store[ann.filename].boxes, gt])
        labels.append(label_proposals(regions, gt, torch.tensor([index[n] for n in ann.labels]), 0.5).labels)
        owner.append(torch.full((len(regions),), i))
        boxes.append(regions)
    owner, boxes, labels = torch.cat(owner), torch.cat(boxes), torch.cat(labels)
    fg, bg = torch.nonzero(labels != 0).flatten(), torch.nonzero(labels == 0).flatten()
    num_fg = round(batch_size * 0.25)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.cat([fg[torch.randint(len(fg), (num_fg,), generator=generator)],
                          bg[torch.randint(len(bg), (batch_size - num_fg,), generator=generator)]]).tolist() for _ in range(steps)]

    def collate(rows: list[int]):
        rows = torch.as_tensor(rows)
        used, batch_index = torch.unique(owner[rows], return_inverse=True)
        chosen = [images[i] for i in used.tolist()]
        h, w = max(im.shape[1] for im in chosen), max(im.shape[2] for im in chosen)
        batch = torch.stack([F.pad(im, (0, w - im.shape[2], 0, h - im.shape[1])) for im in chosen])
        crops = warp_regions(batch, torch.cat([batch_index[:, None].float(), boxes[rows]], dim=1), input_size, context_pad)
        mirrored = torch.rand(len(crops)) < 0.5
        crops[mirrored] = crops[mirrored].flip(-1)
        return crops, labels[rows]

    return DataLoader(range(len(labels)), batch_sampler=batches, collate_fn=collate, num_workers=workers), dataset.classes
# ---- end of the old path -------------------------------------------------------------------------


def _timer():
    import lightning as L

    class StepTimer(L.Callback):
        """Seconds from the start of step ``warmup`` to the end of the last step (over epochs)."""

        warmup, seen = 5, 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if self.seen == self.warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.seen += 1
            self.end, self.steps = time.perf_counter(), self.seen - self.warmup

    return StepTimer()


def child(args: argparse.Namespace) -> dict:
    import lightning as L
    import torch

    # One intra-op thread in both paths: on a busy 2-core machine two threads wait on each other at
    # every barrier, and step times then vary 5x from run to run.
    torch.set_num_threads(1)

    from incdet.train.optim import OptimConfig
    from incdet.train.regions import train as _  # noqa: F401 - imported before the baseline is taken

    imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch + Lightning alone

    timer = _timer()
    out = Path(args.out)
    trainer_args = {"max_steps": args.steps, "enable_progress_bar": False, "enable_model_summary": False,
                    "logger": False, "enable_checkpointing": False}
    if args.child == "streaming":
        from incdet.train.regions.config import (
            RegionDataConfig,
            RegionModelConfig,
            RegionTrainConfig,
        )
        from incdet.train.regions.train import train_regions

        cfg = RegionTrainConfig(
            data=RegionDataConfig(train=args.data, train_proposals=args.store, images_per_batch=args.images,
                                  regions_per_image=args.regions, num_workers=args.workers),
            model=RegionModelConfig(arch="googlenet", width=0.25, input_size=64),
            optim=OptimConfig(ema_decay=None), max_epochs=1000, out_dir=str(out), export=str(out / "model.pt"),
            trainer={k: v for k, v in trainer_args.items() if k not in ("logger", "enable_checkpointing")},
        )
        train_regions(cfg, callbacks=[timer])
    else:
        import torch.nn.functional as F

        from incdet.classify.classifier_file import RegionClassifierSpec
        from incdet.train.optim import make_optimizer

        loader, classes = old_in_ram_loader(Path(args.data), Path(args.store), 64, 5, args.images * args.regions, args.steps, args.workers)
        spec = RegionClassifierSpec(arch="googlenet", classes=tuple(classes), input_size=64, context_pad=5, width=0.25)
        optim = OptimConfig(ema_decay=None)

        class OldModule(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.model = spec.build()

            def training_step(self, batch, batch_idx):
                crops, labels = batch
                return F.cross_entropy(self.model(crops).logits, labels, label_smoothing=optim.label_smoothing)

            def configure_optimizers(self):
                return make_optimizer(self.parameters(), optim)

        L.seed_everything(0, workers=True)
        trainer = L.Trainer(max_epochs=1000, callbacks=[timer], gradient_clip_val=optim.gradient_clip, deterministic=True, **trainer_args)
        trainer.fit(OldModule(), train_dataloaders=loader)
        del trainer, loader
    gc.collect()  # DataLoader workers exit and are reaped, so RUSAGE_CHILDREN holds their peak
    return {"steps_per_s": timer.steps / (timer.end - timer.start), "imports_mb": imports_mb, "main_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def run(kind: str, data: Path, store: Path, steps: int, workers: int, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # each run trains afresh
    command = [sys.executable, __file__, "--child", kind, "--data", str(data), "--store", str(store), "--steps", str(steps),
               "--workers", str(workers), "--out", str(out), "--images", str(DEMO.data.images_per_batch),
               "--regions", str(DEMO.data.regions_per_image)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workdir", default="/tmp/incdet-train-scale")
    parser.add_argument("--sizes", type=int, nargs=2, default=(200, 2000))
    parser.add_argument("--child", choices=("streaming", "in-ram"))
    parser.add_argument("--data"), parser.add_argument("--store"), parser.add_argument("--out")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int), parser.add_argument("--regions", type=int)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each demo configuration (best counts)")
    parser.add_argument("--parts", nargs="+", choices=("scale", "demo"), default=("scale", "demo"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    work = Path(args.workdir)
    images, regions = DEMO.data.images_per_batch, DEMO.data.regions_per_image
    print(f"{args.steps} steps of {images} images x {regions} regions (configs/demo.yaml), GoogLeNet x0.25 at 64 px, CPU, "
          "1 torch thread; cheap stored proposals")
    if "scale" in args.parts:
        scale(work, args.sizes, args.steps)
    if "demo" in args.parts:
        demo_speed(work, args.steps, args.repeat)


def scale(work: Path, sizes: list[int], steps: int) -> None:
    rows = []
    for count in sizes:
        annotations = make_synthetic(work / f"synthetic_{count}", count)
        store = write_cheap_proposals(work / f"synthetic_{count}.db", annotations)
        rows.append((count, run("streaming", annotations, store, steps, 2, work / f"run_{count}")))
    print("\npeak RSS, streaming path, 2 DataLoader workers:")
    for count, r in rows:
        print(f"  {count:5d} images of 500x375: main {r['main_rss_mb']:7.1f} MB (imports alone {r['imports_mb']:.0f} MB), "
              f"largest worker {r['worker_rss_mb']:7.1f} MB, {r['steps_per_s']:.2f} steps/s")
    (small, a), (large, b) = rows
    print(f"  {large} vs {small} images: main {b['main_rss_mb'] / a['main_rss_mb'] - 1:+.1%}, worker {b['worker_rss_mb'] / a['worker_rss_mb'] - 1:+.1%} (target within +15%)")


def demo_speed(work: Path, steps: int, repeat: int) -> None:
    """Each configuration ``repeat`` times, interleaved, best of each: on a shared machine the other
    jobs only ever slow a run down."""
    from incdet.data.demo import generate_demo

    demo = work / "demo"
    generate_demo(demo, seed=0)
    store = write_cheap_proposals(work / "demo_train.db", demo / "train" / "annotations")
    print(f"\ndemo train split (240 images of 256x192), steps/s side by side (best of {repeat}):")
    results: dict[tuple[str, int], dict] = {}
    for _ in range(repeat):
        for workers in (0, 2):
            for kind in ("streaming", "in-ram"):
                r = run(kind, demo / "train" / "annotations", store, steps, workers, work / f"run_demo_{kind}_{workers}")
                if r["steps_per_s"] > results.get((kind, workers), {"steps_per_s": 0})["steps_per_s"]:
                    results[kind, workers] = r
    for (kind, workers), r in results.items():
        label = "streaming (incdet)" if kind == "streaming" else "in-RAM (old, baseline)"
        print(f"  {label:24s} {workers} workers: {r['steps_per_s']:.2f} steps/s, main peak RSS {r['main_rss_mb']:.0f} MB")
    for workers in (0, 2):
        ratio = results["streaming", workers]["steps_per_s"] / results["in-ram", workers]["steps_per_s"]
        print(f"  streaming / in-RAM with {workers} workers: {ratio:.2f}x (target >= 1)")


if __name__ == "__main__":
    main()
