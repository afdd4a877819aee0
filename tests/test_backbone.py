"""Backbone training: the papers' loss, schedule and weight averaging, configs, torchvision weights."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import torchvision

from incdet.errors import InputError
from incdet.nets.backbone_file import BackboneSpec, load_backbone, save_state_dict
from incdet.train.backbone.config import (
    BackboneDataConfig,
    BackboneModelConfig,
    BackboneTrainConfig,
)
from incdet.train.backbone.module import BackboneModule, classification_loss
from incdet.train.backbone.train import train_backbone
from incdet.train.config import load_config
from incdet.train.optim import OptimConfig, make_optimizer, make_step_decay

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_config(tmp_path: Path, **changes) -> BackboneTrainConfig:
    """Quarter-width low-res GoogLeNet on 8 px digits, a few batches per epoch: seconds on a CPU."""
    cfg = BackboneTrainConfig(
        data=BackboneDataConfig(format="digits", batch_size=8, num_workers=0),
        model=BackboneModelConfig(arch="googlenet", width=0.25, low_res=True, input_size=8, aux_logits=True, aux_weight=0.3),
        optim=OptimConfig(lr=0.01, lr_decay=0.5, lr_decay_epochs=2, ema_decay=0.5, ema_start_epoch=1),
        max_epochs=3, out_dir=str(tmp_path / "run"), export=str(tmp_path / "backbone.pt"), export_state_dict=None,
        trainer={"accelerator": "cpu", "devices": 1, "limit_train_batches": 2, "limit_val_batches": 1,
                 "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0},
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    cfg.validate()
    return cfg


def test_label_smoothing_is_the_papers_formula() -> None:
    torch.manual_seed(0)
    logits, labels, eps = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0]), 0.1
    q = (1 - eps) * F.one_hot(labels, 5) + eps / 5  # q'(k) = (1 - eps) delta(k, y) + eps / K
    expected = -(q * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(classification_loss(logits, (), labels, eps, 0.3), expected)
    aux = (torch.randn(6, 5), torch.randn(6, 5))
    with_aux = expected + 0.3 * sum(-(q * a.log_softmax(dim=1)).sum(dim=1).mean() for a in aux)
    torch.testing.assert_close(classification_loss(logits, aux, labels, eps, 0.3), with_aux)


@pytest.mark.parametrize("name,lr,decay,every", [("backbone_v3.yaml", 0.045, 0.94, 2), ("backbone_v1.yaml", 0.01, 0.96, 8)])
def test_recipe_lr_schedules(name: str, lr: float, decay: float, every: int) -> None:
    cfg = load_config(CONFIGS / name, BackboneTrainConfig)
    assert (cfg.optim.lr, cfg.optim.lr_decay, cfg.optim.lr_decay_epochs) == (lr, decay, every)
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.optim)
    schedule = make_step_decay(optimizer, cfg.optim)
    for epoch in range(25):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * decay ** (epoch // every))
        optimizer.step()
        schedule.step()


def test_recipes_are_the_papers() -> None:
    v3 = load_config(CONFIGS / "backbone_v3.yaml", BackboneTrainConfig)
    assert (v3.model.arch, v3.model.input_size, v3.model.aux_logits, v3.averaging) == ("inception_v3", 299, True, "ema")
    o = v3.optim
    assert (o.name, o.rmsprop_decay, o.rmsprop_eps, o.gradient_clip, o.label_smoothing, v3.data.batch_size) == ("rmsprop", 0.9, 1.0, 2.0, 0.1, 32)
    v1 = load_config(CONFIGS / "backbone_v1.yaml", BackboneTrainConfig)
    assert (v1.model.arch, v1.model.aux_weight, v1.model.dropout, v1.averaging) == ("googlenet", 0.3, 0.4, "polyak")
    assert (v1.optim.name, v1.optim.momentum, v1.optim.label_smoothing, v1.optim.gradient_clip) == ("sgd", 0.9, 0.0, None)
    a = v1.augment
    assert (a.min_area, a.max_area, a.min_aspect, a.max_aspect, a.random_interpolation) == (0.08, 1.0, 0.75, pytest.approx(4 / 3), True)
    demo = load_config(CONFIGS / "backbone_demo.yaml", BackboneTrainConfig)
    assert demo.data.format == "digits"


@pytest.mark.parametrize("text,message", [
    ("optim: {name: adam}", "optim.name must be one of rmsprop, sgd, adamw, got 'adam'"),
    ("model: {arch: inception_v3, input_size: 60}", "model.input_size 60 is below the inception_v3 minimum 75"),
    ("modle: {arch: googlenet}", "unknown key modle"),
    ("data: {format: digits, batch_size: big}", "data.batch_size: expected int, got 'big'"),
    ("augment: {min_area: 0}", "augment areas need 0 < min_area <= max_area <= 1"),
    ("averaging: swa", "averaging must be one of ema, polyak, none"),
    ("trainer: {max_epochs: 3}", "trainer.max_epochs is set by incdet"),
    ("data: {format: folder}", "data.root is required for the folder format"),
])
def test_bad_config_values_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n" + ("" if text.startswith("data:") else "data: {format: digits}\n"))
    with pytest.raises(InputError) as err:
        load_config(path, BackboneTrainConfig)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


class Probe(L.Callback):
    """Records the weights after every optimizer step, the weights validation sees, and the lr of each epoch."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.validated: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.lrs: list[float] = []

    @staticmethod
    def weights(module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.model.named_parameters() if not k.startswith(("aux1.", "aux2."))}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(self.weights(pl_module))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validated.append((trainer.current_epoch, self.weights(pl_module)))


def _mix(a: dict, b: dict, wa: float, wb: float) -> dict:
    return {k: wa * a[k] + wb * b[k] for k in a}


@pytest.mark.parametrize("averaging", ["ema", "polyak"])
def test_evaluation_and_export_use_the_averaged_weights(tmp_path: Path, one_thread, averaging: str) -> None:
    cfg = tiny_config(tmp_path, averaging=averaging)
    probe = Probe()
    train_backbone(cfg, callbacks=[probe])
    w = probe.steps  # 3 epochs x 2 steps; the average starts with epoch 1, i.e. at step 2
    assert len(w) == 6 and probe.lrs == pytest.approx([0.01, 0.01, 0.005])  # x0.5 every 2 epochs, per epoch
    if averaging == "ema":  # a <- 0.5 a + 0.5 w, starting from a copy
        after_epoch1 = _mix(w[2], w[3], 0.5, 0.5)
        final = _mix(_mix(after_epoch1, w[4], 0.5, 0.5), w[5], 0.5, 0.5)
    else:  # the plain mean of every iterate since the start
        after_epoch1 = _mix(w[2], w[3], 0.5, 0.5)
        final = {k: sum(s[k] for s in w[2:]) / 4 for k in w[2]}
    (e0, seen0), (e1, seen1), (e2, seen2) = probe.validated
    for expected, seen in ((w[1], seen0), (after_epoch1, seen1), (final, seen2)):  # before the start: current weights
        for key in expected:
            torch.testing.assert_close(seen[key], expected[key])
    assert not torch.equal(final["fc.weight"], w[5]["fc.weight"])  # the average is not the last iterate
    spec, model = load_backbone(cfg.export)
    for key, value in model.named_parameters():
        torch.testing.assert_close(value, final[key])
    assert spec.metadata["averaging"] == averaging and 0 <= spec.metadata["metrics"]["val_top1"] <= 1

    resumed = tiny_config(tmp_path, averaging=averaging, max_epochs=4, resume=str(tmp_path / "run" / "checkpoints" / "last.ckpt"))
    probe = Probe()
    train_backbone(resumed, callbacks=[probe])
    assert len(probe.steps) == 2 and probe.lrs == pytest.approx([0.005])  # one more epoch, the schedule continues
    w6, w7 = probe.steps
    if averaging == "ema":  # the average was checkpointed and goes on from where it was
        expected = _mix(_mix(final, w6, 0.5, 0.5), w7, 0.5, 0.5)
    else:
        expected = {k: (4 * final[k] + w6[k] + w7[k]) / 6 for k in final}
    spec, model = load_backbone(resumed.export)
    for key, value in model.named_parameters():
        torch.testing.assert_close(value, expected[key])
    assert spec.metadata["epochs"] == 4


def test_short_run_learns_well_above_chance(tmp_path: Path, one_thread) -> None:
    """The v3 recipe (RMSProp 0.045, smoothing, clipping, EMA) for 3 epochs of the shipped digits at 16 px."""
    cfg = tiny_config(tmp_path, max_epochs=3)
    cfg.model.input_size, cfg.data.batch_size = 16, 32
    cfg.optim.ema_decay, cfg.optim.lr, cfg.optim.lr_decay = 0.9, 0.045, 0.94
    cfg.trainer |= {"limit_train_batches": 1.0, "limit_val_batches": 4}
    cfg.augment.min_area, cfg.augment.hflip, cfg.augment.saturation = 0.5, False, 0.0
    train_backbone(cfg)
    spec, _ = load_backbone(cfg.export)
    print(f"val top-1 after 3 epochs: {spec.metadata['metrics']['val_top1']:.3f}")
    assert spec.metadata["metrics"]["val_top1"] > 0.72  # measured 0.758 (chance: 0.1, 10 digits)


def test_torchvision_state_dicts_load_both_ways(tmp_path: Path) -> None:
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, num_classes=1000)
    torch.save(reference.state_dict(), tmp_path / "googlenet_imagenet.pt")
    spec = BackboneSpec("googlenet", tuple("abc"), 224)
    module = BackboneModule(spec, OptimConfig(), aux_logits=True, aux_weight=0.3, pretrained=str(tmp_path / "googlenet_imagenet.pt"))
    torch.testing.assert_close(module.model.inception5b.branch1.conv.weight, reference.inception5b.branch1.conv.weight)
    torch.testing.assert_close(module.model.aux1.fc1.weight, reference.aux1.fc1.weight)
    assert module.model.fc.weight.shape == (3, 1024)  # a new classifier for the new classes

    ours = BackboneSpec("inception_v3", tuple("abcd"), 299).build(aux_logits=True)
    save_state_dict(tmp_path / "exported.pt", ours)
    theirs = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=4)
    theirs.load_state_dict(torch.load(tmp_path / "exported.pt", weights_only=True))  # strict: same keys and shapes
    x = torch.randn(1, 3, 80, 80)
    torch.testing.assert_close(theirs.eval()(ours.transform_input(x)), ours.eval()(x), rtol=1e-4, atol=1e-5)

