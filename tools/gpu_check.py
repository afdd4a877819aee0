"""One short, prepared run that measures incdet on a GPU and prints one table for the README.

    python tools/gpu_check.py [--device cuda] [--out FILE.md | FILE.json]
    python tools/gpu_check.py --device cpu --quick     # the same code paths, small, on the CPU

It takes under 8 minutes on one H100 and measures, on generated 500x375 VOC images (shapes on
noise, 3 classes) with stored random proposals (so no selective search runs before training):

1. region training (``incdet.train.regions.train.train_regions``) of a full-size GoogLeNet at
   224 px, 16 images x 8 regions a step: steps/s after warm-up and peak GPU memory, in fp32 and
   bf16-mixed;
2. warp+classify (``Pipeline.classify``) of a 3-member full-size ensemble (GoogLeNet 224 px,
   Inception-v3 299 px, GoogLeNet 224 px of another seed; untrained, which costs the same) on
   2,000 proposals per image: crops/s and images/s (median of several repeats between CUDA events,
   after warm-up) and the share of the card's dense bf16 peak, in fp32 and bf16;
3. the same ensemble through ``incdet detect`` end to end (selective search on the CPU cores
   included): images/s and seconds per image of each stage, and which side bounds the throughput;
4. region training under DDP on one GPU (``strategy: ddp``), a few steps.

``--quick`` runs every section small (GoogLeNet/Inception-v3 x0.125 on 64/75 px crops, few images,
proposals and steps); tests/test_gpu_check.py runs it on the CPU. A section that fails prints its
error in its row and the others still run (exit status 1); progress goes to stderr, the table to
stdout. ``bench/detect.py --sections throughput`` reuses :func:`classify_throughput`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import gc
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchvision

from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.devices import resolve_device
from incdet.errors import InputError
from incdet.io import read_image
from incdet.nets.complexity import count_macs
from incdet.pipeline import Pipeline
from incdet.proposals.store import ProposalStore
from incdet.regions.warp import default_context_pad
from incdet.structures import Proposals, RegionScores
from incdet.train.optim import OptimConfig
from incdet.train.regions.config import RegionDataConfig, RegionModelConfig, RegionTrainConfig
from incdet.train.regions.train import train_regions

_spec = importlib.util.spec_from_file_location("bench_train_scale", Path(__file__).resolve().parent.parent / "bench" / "train_scale.py")
train_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_scale)  # its synthetic 500x375 VOC images and cheap proposal stores

GIB = 2**30

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from the vendors' data sheets: the first rule
# whose name part is in the device name and whose memory bound the card reaches wins, so variants
# come before the bare name. The H100 SXM calls itself "NVIDIA H100 80GB HBM3"; a 94 GB H100 is the
# NVL card whatever its name says. "GH200" matches "H200" (the same 989).
BF16_PEAKS = (
    ("H100 NVL", 0, 835e12), ("H100 PCIe", 0, 756e12), ("H100", 90, 835e12), ("H100", 0, 989e12),
    ("H200 NVL", 0, 835e12), ("H200", 0, 989e12),
    ("A100", 0, 312e12), ("A10G", 0, 70e12), ("A10", 0, 125e12),
    ("L40S", 0, 362e12), ("L40", 0, 181e12), ("L4", 0, 121e12),
)


@dataclass(frozen=True)
class Plan:
    """How big each section runs: full size on a GPU, or ``--quick`` (same code paths, small)."""

    width: float
    googlenet_size: int
    inception_size: int
    images_per_batch: int
    warmup_steps: int
    timed_steps: int
    ddp_warmup_steps: int
    ddp_timed_steps: int
    loader_workers: int  # training DataLoader processes
    proposals: int  # stored proposals per image, for training and warp+classify
    classify_images: int  # images per Pipeline.classify call
    repeats: int  # timed calls of warp+classify; the median counts
    detect_images: int
    search_workers: int  # incdet detect --workers

    @property
    def train_images(self) -> int:
        """One epoch holds every timed step: no epoch end (checkpoint, new loader iterator) is timed."""
        return self.images_per_batch * (self.warmup_steps + self.timed_steps)


REGIONS_PER_IMAGE = 8
FULL = Plan(width=1.0, googlenet_size=224, inception_size=299, images_per_batch=16, warmup_steps=10, timed_steps=40,
            ddp_warmup_steps=5, ddp_timed_steps=15, loader_workers=min(8, os.cpu_count() or 1), proposals=2000,
            classify_images=4, repeats=5, detect_images=48, search_workers=os.cpu_count() or 1)
# Quick: no DataLoader workers, so the module warps on the device as it does on a GPU (with workers on
# the CPU the workers warp instead).
QUICK = Plan(width=0.125, googlenet_size=64, inception_size=75, images_per_batch=4, warmup_steps=2, timed_steps=8,
             ddp_warmup_steps=1, ddp_timed_steps=3, loader_workers=0, proposals=200, classify_images=2, repeats=3,
             detect_images=2, search_workers=1)


@dataclass
class Result:
    """What a section measured: its value (in ``unit``), peak device memory and the details."""

    value: float
    unit: str
    memory_gib: float | None
    notes: str


@dataclass
class Row:
    """One line of the table: a section at one precision, and its result or the error that stopped it."""

    section: str
    precision: str
    result: Result | None = None
    error: str | None = None


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- Shared with bench/detect.py: device clocks, memory and peaks ----------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(run: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``run``, after ``warmup`` untimed ones (kernels chosen,
    memory allocated). On a GPU the clock is two CUDA events around the call on the current stream,
    so it reads the device's timeline up to the call's last kernel, not when the host enqueued it."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            with torch.cuda.device(device):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
            seconds.append(start.elapsed_time(end) / 1000)
        else:
            begin = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - begin)
    return seconds


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """The most GPU memory tensors held since :func:`reset_peak_memory` (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def device_card(device: torch.device) -> tuple[str, float]:
    """The device's name and memory in GiB (the CPU: its processor and the machine's RAM)."""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return properties.name, properties.total_memory / GIB
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def bf16_peak(name: str, memory_gib: float) -> float | None:
    """The card's dense bf16 peak in FLOP/s (:data:`BF16_PEAKS`), or None when it is not listed (a
    CPU, an unlisted card, or a MIG slice, which has only part of the card)."""
    if "MIG" in name:
        return None
    return next((peak for part, least, peak in BF16_PEAKS if part in name and memory_gib >= least), None)


def classify_throughput(pipeline: Pipeline, images: Sequence[np.ndarray], proposals: Sequence[Proposals],
                        repeats: int, warmup: int = 1) -> dict[str, float | None]:
    """Warp+classify (``Pipeline.classify``, every proposal through every member) of ``images``, timed
    :func:`time_calls`-wise; the median call gives crops/s (one crop per member and proposal),
    images/s, FLOP/s (2 x each member's multiply-adds per crop) and its share of the bf16 peak."""
    device = pipeline.device
    scored: list[RegionScores] = []

    def run() -> None:
        scored[:] = pipeline.classify(images, proposals)

    seconds = statistics.median(time_calls(run, device, repeats, warmup))
    boxes = sum(len(p) for p in proposals)
    if [len(r.probs) for r in scored] != [len(p) for p in proposals]:
        raise RuntimeError("Pipeline.classify returned another number of scores than it was given proposals")
    members = pipeline.ensemble.specs, pipeline.ensemble.members
    flops = sum(2 * count_macs(model, spec.input_size) for spec, model in zip(*members)) * boxes
    crops = boxes * len(members[0])
    peak = bf16_peak(*device_card(device))
    return {"seconds": seconds, "crops_per_s": crops / seconds, "images_per_s": len(images) / seconds,
            "flops_per_crop": flops / crops, "flop_per_s": flops / seconds, "peak_flop_per_s": peak,
            "share_of_peak": flops / seconds / peak if peak else None}


def describe_share(result: dict[str, float | None]) -> str:
    if result["peak_flop_per_s"] is None:
        return f"{result['flop_per_s'] / 1e12:.3g} TFLOP/s, peak unknown"
    return (f"{result['flop_per_s'] / 1e12:.1f} TFLOP/s = {result['share_of_peak']:.1%} of the dense bf16 peak "
            f"{result['peak_flop_per_s'] / 1e12:.0f} TFLOP/s")


# ---- The run's inputs -------------------------------------------------------------------------------
class Setup:
    """What the sections share, made on first use (so a failure here fails only the sections needing it)."""

    def __init__(self, device: torch.device, plan: Plan, work: Path) -> None:
        self.device, self.plan, self.work = device, plan, work

    @functools.cached_property
    def annotations(self) -> Path:
        """Generated 500x375 images with VOC XML, and ``plan.proposals`` random boxes per image in a
        store stamped current (training then searches nothing)."""
        log(f"generating {self.plan.train_images} images of 500x375 with {self.plan.proposals} stored proposals each")
        annotations = train_scale.make_synthetic(self.work / "data", self.plan.train_images)
        train_scale.write_cheap_proposals(self.store, annotations, per_image=self.plan.proposals)
        return annotations

    @property
    def store(self) -> Path:
        return self.work / "proposals.db"

    @property
    def images(self) -> list[Path]:
        return sorted((self.annotations.parent / "images").glob("*.jpg"))

    @functools.cached_property
    def members(self) -> list[Path]:
        """The 3-member ensemble's files (untrained: the speed is the same), each with a box regressor."""
        plan, folder = self.plan, self.work / "members"
        folder.mkdir(exist_ok=True)
        paths = []
        for arch, size, seed in (("googlenet", plan.googlenet_size, 0), ("inception_v3", plan.inception_size, 0),
                                 ("googlenet", plan.googlenet_size, 1)):
            spec = RegionClassifierSpec(arch, train_scale.SHAPES, size, default_context_pad(size), plan.width, bbox_reg=True)
            torch.manual_seed(seed)
            paths.append(folder / f"{arch}_{size}_seed{seed}.pt")
            save_region_classifier(paths[-1], spec, spec.build())
        return paths

    def ensemble_name(self) -> str:
        p = self.plan
        return f"GoogLeNet {p.googlenet_size} + Inception-v3 {p.inception_size} + GoogLeNet {p.googlenet_size} px, w{p.width:g}"

    def trainer_devices(self) -> dict[str, object]:
        if self.device.type == "cpu":
            return {"accelerator": "cpu", "devices": 1}
        return {"accelerator": "cuda", "devices": [self.device.index] if self.device.index is not None else 1}


# ---- Sections ---------------------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Steps/s from the end of step ``warmup`` to the end of the last step, so waits for data and every
    hook between steps count; the device is synchronised before each clock read."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.done = warmup, 0
        self.start = self.end = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: object, batch: object, batch_idx: int) -> None:
        self.done += 1
        if self.done >= self.warmup:
            synchronize(module.device)
            self.end = time.perf_counter()
            if self.done == self.warmup:
                self.start = self.end

    @property
    def steps_per_s(self) -> float:
        if self.done <= self.warmup:
            raise RuntimeError(f"training ran {self.done} steps, not more than the {self.warmup} warm-up steps")
        return (self.done - self.warmup) / (self.end - self.start)


def measure_training(setup: Setup, name: str, precision: str, warmup: int, timed: int, **trainer: object) -> tuple[float, float | None]:
    """Steps/s and peak memory of ``warmup + timed`` steps of the real region training (GoogLeNet with
    box regression, the v3 recipe with the weight average on from the first step)."""
    plan = setup.plan
    out = setup.work / f"train_{name}"
    cfg = RegionTrainConfig(
        data=RegionDataConfig(train=str(setup.annotations), train_proposals=str(setup.store), images_per_batch=plan.images_per_batch,
                              regions_per_image=REGIONS_PER_IMAGE, num_workers=plan.loader_workers),
        model=RegionModelConfig(arch="googlenet", width=plan.width, input_size=plan.googlenet_size, bbox_reg=True),
        optim=OptimConfig(ema_start_epoch=0), max_epochs=1, out_dir=str(out), export=str(out / "model.pt"),
        trainer={**setup.trainer_devices(), "precision": precision, "max_steps": warmup + timed, "enable_progress_bar": False,
                 "enable_model_summary": False, **trainer},
    )
    cfg.validate()
    timer = StepTimer(warmup)
    gc.collect()
    reset_peak_memory(setup.device)
    train_regions(cfg, callbacks=[timer])
    return timer.steps_per_s, peak_memory_gib(setup.device)


def section_training(setup: Setup, precision: str) -> Result:
    plan = setup.plan
    steps_per_s, memory = measure_training(setup, precision, precision, plan.warmup_steps, plan.timed_steps)
    return Result(steps_per_s, "steps/s", memory, f"{steps_per_s * plan.images_per_batch:.1f} images/s; {plan.timed_steps} steps "
                  f"timed after {plan.warmup_steps}; {plan.loader_workers} loader workers")


def section_classify(setup: Setup, precision: str) -> Result:
    plan = setup.plan
    pipeline = Pipeline(models=setup.members, multibox=None, device=str(setup.device), precision=precision)
    paths = setup.images[: plan.classify_images]
    with ProposalStore(setup.store, readonly=True) as store:
        proposals = [store[path.name] for path in paths]
    images = [read_image(path) for path in paths]
    reset_peak_memory(setup.device)
    result = classify_throughput(pipeline, images, proposals, plan.repeats)
    return Result(result["crops_per_s"], "crops/s", peak_memory_gib(setup.device),
                  f"{result['images_per_s']:.2f} images/s; {describe_share(result)}; median of {plan.repeats} calls of "
                  f"{len(images)} images")


def section_detect(setup: Setup, precision: str) -> Result:
    """``incdet detect`` in a subprocess, as a user runs it: its own wall clock and seconds per stage."""
    plan = setup.plan
    folder = setup.work / "detect_images"
    folder.mkdir(exist_ok=True)
    for path in setup.images[: plan.detect_images]:
        (folder / path.name).symlink_to(path)
    command = [sys.executable, "-m", "incdet.cli", "detect", str(folder), *(a for m in setup.members for a in ("--model", str(m))),
               "--no-multibox", "--out", str(setup.work / "detections.json"), "--precision", precision,
               "--device", str(setup.device), "--workers", str(plan.search_workers)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    total = time.perf_counter() - start
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"incdet detect exited {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}")
    wall = re.search(r"^(\d+) images in ([\d.]+) s wall", done.stdout, re.M)
    stages = re.search(r"^per stage, s/image: (.+)$", done.stdout, re.M)
    if not wall or not stages:
        raise RuntimeError(f"incdet detect printed no timing lines: {done.stdout.strip()[-800:]}")
    images, seconds = int(wall[1]), float(wall[2])
    per_stage = {name: float(value) for name, value in (item.rsplit(" ", 1) for item in stages[1].split(", "))}
    # Decoding and selective search run in the worker processes, everything else in the main one.
    in_workers = per_stage.get("decode", 0.0) + per_stage.get("search", 0.0)
    in_main = sum(per_stage.values()) - in_workers
    workers_cap, main_cap = plan.search_workers / in_workers, 1 / in_main
    bound = "selective search (CPU workers)" if workers_cap < main_cap else "the main process (device stages)"
    return Result(images / seconds, "images/s", None, f"{images} images; s/image: {stages[1]}; bound by {bound}: workers "
                  f"at most {workers_cap:.1f} images/s, main {main_cap:.1f}; {total:.0f} s with start-up")


def section_ddp(setup: Setup, precision: str) -> Result:
    plan = setup.plan
    steps_per_s, memory = measure_training(setup, "ddp", precision, plan.ddp_warmup_steps, plan.ddp_timed_steps, strategy="ddp")
    return Result(steps_per_s, "steps/s", memory, f"{steps_per_s * plan.images_per_batch:.1f} images/s; {plan.ddp_timed_steps} "
                  f"steps timed after {plan.ddp_warmup_steps}")


def sections(setup: Setup) -> list[tuple[str, str, Callable[[Setup, str], Result]]]:
    """(section, precision, measurement) in the order they run; DDP last, as it leaves a process group."""
    p = setup.plan
    training = (f"1. region training, GoogLeNet w{p.width:g} {p.googlenet_size} px, {p.images_per_batch} images x "
                f"{REGIONS_PER_IMAGE} regions/step")
    return [
        (training, "32-true", section_training),
        (training, "bf16-mixed", section_training),
        (f"2. warp+classify, {setup.ensemble_name()}, {p.proposals} proposals/image", "fp32", section_classify),
        (f"2. warp+classify, {setup.ensemble_name()}, {p.proposals} proposals/image", "bf16", section_classify),
        (f"3. incdet detect end to end, the same ensemble, selective search on {p.search_workers} CPU workers", "bf16", section_detect),
        (f"4. region training as 1., under DDP (strategy ddp, 1 {setup.device.type.upper()} process)", "bf16-mixed", section_ddp),
    ]


def run_sections(setup: Setup) -> list[Row]:
    """Every section, each on its own: an error becomes its row, and the next section still runs."""
    rows = []
    for section, precision, measure in sections(setup):
        log(f"{section} ({precision}) ...")
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # Lightning's chatter: the table alone goes to stdout
                rows.append(Row(section, precision, measure(setup, precision)))
        except Exception as exc:  # noqa: BLE001 - reported in the table; the other sections must still run
            traceback.print_exc(file=sys.stderr)
            rows.append(Row(section, precision, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300].replace("|", "/")))
        finally:
            gc.collect()
            if setup.device.type == "cuda":
                torch.cuda.empty_cache()
        log(f"{section} ({precision}) done in {time.perf_counter() - start:.1f} s")
    return rows


# ---- The table --------------------------------------------------------------------------------------
def header(device: torch.device, quick: bool) -> str:
    name, memory = device_card(device)
    cuda = (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()} (fp32 convolutions in TF32: "
            f"{torch.backends.cudnn.allow_tf32}, fp32 matmul precision {torch.get_float32_matmul_precision()})") if device.type == "cuda" else ""
    return (f"incdet gpu_check{' --quick' if quick else ''}, {datetime.datetime.now().isoformat(timespec='minutes')}: "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}{cuda}; {name}, {memory:.1f} GiB")


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def markdown(title: str, rows: Sequence[Row]) -> str:
    lines = [title, "", "| measurement | precision | result | peak GPU memory | details |", "|---|---|---|---:|---|"]
    for row in rows:
        result = row.result
        if result is None:
            lines.append(f"| {row.section} | {row.precision} | **error** | | {row.error} |")
            continue
        memory = "n/a" if result.memory_gib is None else f"{result.memory_gib:.2f} GiB"
        lines.append(f"| {row.section} | {row.precision} | {_number(result.value)} {result.unit} | {memory} | {result.notes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="every section small (tiny networks, few images and steps)")
    parser.add_argument("--out", type=Path, help="also write the table here: JSON for a .json name, else markdown")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except InputError as exc:
        parser.error(str(exc))
    title = header(device, args.quick)
    log(title)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="incdet-gpu-check-") as work:
        rows = run_sections(Setup(device, QUICK if args.quick else FULL, Path(work)))
    table = markdown(title, rows)
    print(table, flush=True)
    log(f"all sections in {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".json":
            args.out.write_text(json.dumps({"header": title, "rows": [dataclasses.asdict(r) for r in rows]}, indent=1) + "\n")
        else:
            args.out.write_text(table + "\n")
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
