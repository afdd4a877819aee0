"""The code paths a GPU takes, exercised on the CPU: region training with torchvision's ``roi_align`` as
it behaves on CUDA, mixed precision in detection and training, channels-last, mid-epoch checkpoints
and resuming from them, and checkpoint writes that stay in the run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import skimage.data
import torch
import torchvision.ops
from region_training_data import make_data, region_config, write_config
from test_multibox_train import config as multibox_config
from test_backbone import tiny_config as tiny_backbone_config
from test_multibox_train import write_split

import incdet.io
from incdet import Pipeline
from incdet.classify.classifier_file import load_region_classifier
from incdet.cli import main
from incdet.multibox.multibox_file import load_multibox
from incdet.nets.backbone_file import load_backbone
from incdet.train.backbone.train import train_backbone
from incdet.train.config import load_config
from incdet.train.regions.config import RegionTrainConfig
from incdet.train.regions.module import RegionClassifierModule
from incdet.train.regions.train import train_regions
from incdet.train.resume import EpochSampler

ROI_ALIGN = sys.modules["torchvision.ops.roi_align"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_data(tmp_path_factory.mktemp("gpu_paths"), train=8, val=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(paths: dict[str, Path], tmp_path: Path, **overrides) -> RegionTrainConfig:
    return load_config(write_config(tmp_path / "config.yaml", region_config(paths, tmp_path, **overrides)), RegionTrainConfig)


@pytest.fixture
def roi_align_as_on_cuda(monkeypatch) -> list[int]:
    """``torchvision.ops.roi_align`` as it behaves on a CUDA tensor: with deterministic algorithms on,
    torchvision runs its pure-Python ``_roi_align``, whose sampling grid, with an adaptive sampling
    ratio (<= 0), is sized by the call's largest region: hundreds of GB for one GPU training batch.
    That case is refused here instead of allocated; a fixed ratio (bounded) runs. Returns the
    sampling ratios the fallback was reached with."""
    native, reached = ROI_ALIGN.roi_align, []

    def like_cuda(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        if not torch.are_deterministic_algorithms_enabled():
            return native(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
        reached.append(sampling_ratio)
        if sampling_ratio <= 0:
            raise MemoryError("roi_align's deterministic fallback with an adaptive sampling ratio (hundreds of GB on a GPU)")
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        return ROI_ALIGN._roi_align(input, boxes, spatial_scale, size[0], size[1], sampling_ratio, aligned)

    for module in (ROI_ALIGN, torchvision.ops, sys.modules["incdet.regions.warp"], sys.modules["incdet.multibox.network"]):
        monkeypatch.setattr(module, "roi_align", like_cuda)
    return reached


class DeterministicMode(L.Callback):
    """Whether torch's deterministic algorithms were on while training ran."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.on = torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("deterministic", [False, True])
def test_region_training_with_cuda_behaviour_never_reaches_the_unbounded_roi_align(data, tmp_path, roi_align_as_on_cuda,
                                                                                   deterministic) -> None:
    # The warp in the LightningModule (no DataLoader workers), as on a GPU; box regression on.
    cfg = _config(data, tmp_path, deterministic=deterministic, data={"num_workers": 0}, model={"bbox_reg": True})
    mode = DeterministicMode()
    spec, _ = load_region_classifier(train_regions(cfg, callbacks=[mode]))
    assert spec.metadata["epochs"] == 1 and roi_align_as_on_cuda == []
    assert mode.on is deterministic and not torch.are_deterministic_algorithms_enabled()


def test_multibox_training_with_cuda_behaviour_uses_the_roi_align_kernel(tmp_path, roi_align_as_on_cuda) -> None:
    write_split(tmp_path / "data" / "train", 8, seed=0)
    write_split(tmp_path / "data" / "val", 4, seed=1)
    assert main(["train", "multibox", "--config", str(multibox_config(tmp_path, max_epochs=1))]) == 0
    assert roi_align_as_on_cuda == []  # by default not deterministic: the kernel, not the Python fallback


def test_the_cuda_behaviour_emulation_refuses_what_a_gpu_would_not_survive(roi_align_as_on_cuda) -> None:
    image, boxes = torch.rand(1, 3, 64, 64), torch.tensor([[0.0, 2.0, 2.0, 60.0, 60.0]])
    with torch.inference_mode():
        torchvision.ops.roi_align(image, boxes, 8, sampling_ratio=-1)  # not deterministic: the kernel
        torch.use_deterministic_algorithms(True)
        try:
            with pytest.raises(MemoryError):
                torchvision.ops.roi_align(image, boxes, 8, sampling_ratio=-1)
            assert torchvision.ops.roi_align(image, boxes, 8, sampling_ratio=2).shape == (1, 3, 8, 8)
        finally:
            torch.use_deterministic_algorithms(False)
    assert roi_align_as_on_cuda == [-1, 2]


class Stop(L.Callback):
    """Interrupts training (as Ctrl-C would) before global step ``at`` begins."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


class SeenImages(L.Callback):
    """The dataset indices of the images each epoch trained on, step by step."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[int]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epochs.setdefault(trainer.current_epoch, []).extend(batch.indices.tolist())


def test_a_run_killed_mid_epoch_resumes_where_it_stopped_and_sees_each_image_of_that_epoch_once(data, tmp_path) -> None:
    # 8 images, 2 per step: 4 steps an epoch. Stopped before step 6 (the third of epoch 1), after the
    # checkpoint of step 5; the resumed run does steps 6 and 7 only, on the images epoch 1 had not reached.
    seen = SeenImages()
    cfg = _config(data, tmp_path, max_epochs=2, checkpoint_every_n_steps=1)
    with pytest.raises(KeyboardInterrupt):
        train_regions(cfg, callbacks=[seen, Stop(at=6)])
    assert [len(seen.epochs[0]), len(seen.epochs[1])] == [8, 4]
    train_regions(_config(data, tmp_path, max_epochs=2, checkpoint_every_n_steps=1, resume=True), callbacks=[seen])
    assert sorted(seen.epochs[0]) == sorted(seen.epochs[1]) == list(range(8))
    assert seen.epochs[0] != seen.epochs[1]  # a new order every epoch
    spec, _ = load_region_classifier(cfg.export)
    assert spec.metadata["epochs"] == 2


def test_epoch_samplers_split_an_epoch_between_ranks_and_start_part_way(tmp_path) -> None:
    dataset = list(range(10))
    ranks = [EpochSampler(dataset, shuffle=True, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(1)
    whole = [list(sampler) for sampler in ranks]
    assert sorted(whole[0] + whole[1]) == dataset
    resumed = EpochSampler(dataset, shuffle=True, seed=3, num_replicas=2, rank=1)
    resumed.start_at(1, 2)
    resumed.set_epoch(1)  # Lightning sets the epoch again after the first iterator exists
    assert list(resumed) == whole[1][2:]
    assert list(resumed) == whole[1]  # the next iteration of that epoch is whole again


def test_checkpoints_are_written_beside_their_target_and_renamed(data, tmp_path, monkeypatch) -> None:
    renames = []
    replace = incdet.io.os.replace
    monkeypatch.setattr(incdet.io.os, "replace", lambda src, dst: (renames.append((Path(src), Path(dst))), replace(src, dst)))
    train_regions(_config(data, tmp_path, checkpoint_every_n_steps=2))
    written = [(src, dst) for src, dst in renames if dst.suffix == ".ckpt"]
    assert {dst.name for _, dst in written} == {"last.ckpt", "epoch=0-step=4.ckpt"}
    assert len([dst for _, dst in written if dst.name == "last.ckpt"]) >= 3  # steps 2 and 4, and the epoch's end
    assert all(src.parent == dst.parent for src, dst in written)


def test_region_training_in_bf16_mixed_precision_and_channels_last(data, tmp_path) -> None:
    cfg = _config(data, tmp_path, trainer={"precision": "bf16-mixed"}, data={"num_workers": 0}, model={"bbox_reg": True})
    spec, model = load_region_classifier(train_regions(cfg))
    assert spec.metadata["epochs"] == 1 and np.isfinite(spec.metadata["metrics"]["val_loss"])
    module = RegionClassifierModule(spec, cfg.optim)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in module.parameters() if p.dim() == 4)


def test_multibox_and_backbone_training_in_bf16_mixed_precision(tmp_path) -> None:
    write_split(tmp_path / "data" / "train", 8, seed=0)
    write_split(tmp_path / "data" / "val", 4, seed=1)
    assert main(["train", "multibox", "--config", str(multibox_config(tmp_path, max_epochs=1,
                                                                      trainer={"precision": "bf16-mixed"}))]) == 0
    assert np.isfinite(load_multibox(tmp_path / "run" / "multibox.pt")[0].metadata["metrics"]["val_loss"])
    cfg = tiny_backbone_config(tmp_path / "backbone", max_epochs=1)
    cfg.trainer = {**cfg.trainer, "precision": "bf16-mixed"}
    train_backbone(cfg)
    assert np.isfinite(load_backbone(cfg.export)[0].metadata["metrics"]["val_loss"])


def test_bf16_detection_scores_are_close_to_fp32_but_computed_in_bf16() -> None:
    image = skimage.data.chelsea()
    # Both on torch: fp32's default CPU runtime, onnxruntime, differs from torch in the last bits already.
    fp32, bf16 = Pipeline(device="cpu", precision="fp32", runtime="torch"), Pipeline(device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision, Pipeline(device="cpu").precision) == ("fp32", "bf16", "fp32")
    proposals = fp32.propose([image])
    a, b = fp32.classify([image], proposals)[0], bf16.classify([image], proposals)[0]
    assert b.probs.dtype == b.boxes.dtype == torch.float32
    difference = (a.probs - b.probs).abs().max().item()
    print(f"largest probability difference bf16 vs fp32 over {len(proposals[0])} proposals: {difference:.4f}")
    assert 0 < difference < 0.1
    assert (a.boxes - b.boxes).abs().max() < 3  # pixels
