"""incdet eval-cls: top-1/top-5 per crop scheme, softmax-averaged ensembles, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_backbone import tiny_config
from torch import Tensor, nn

from incdet.cli import main
from incdet.data.classification import ClassificationSet
from incdet.nets.backbone_file import BackboneSpec, save_backbone
from incdet.train.backbone.eval import evaluate_backbones
from incdet.train.backbone.train import train_backbone


class Constant(nn.Module):
    """Predicts the same class probabilities for every crop."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(probs).log())

    def forward(self, x: Tensor) -> Tensor:
        return self.logits.expand(len(x), -1)


def test_ensemble_averages_softmax_over_models() -> None:
    data = ClassificationSet(["a", "b", "c"], np.ones(5, dtype=np.int64), "three", pixels=np.zeros((5, 10, 14, 3), np.uint8))
    spec = BackboneSpec("googlenet", ("a", "b", "c"), 8, low_res=True)  # 8 px: the smallest input low_res accepts
    first, second = Constant([0.6, 0.4, 1e-9]), Constant([1e-9, 0.45, 0.55])  # each alone is wrong about class b
    rows = evaluate_backbones([("first", spec, first), ("second", spec, second)], data, [1, 10])
    table = {(r.name, r.crops): (r.top1, r.top5, r.cost, r.images) for r in rows}
    assert table[("first", 1)][0] == table[("second", 10)][0] == 0.0
    # mean (0.3, 0.425, 0.275) picks b; max-pooling over models would pick a (0.6).
    assert table[("ensemble of 2", 1)] == (1.0, 1.0, 2, 5) and table[("ensemble of 2", 10)][2] == 20


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("backbone")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny_config(tmp, max_epochs=1)
        train_backbone(cfg)
    finally:
        torch.set_num_threads(before)
    return Path(cfg.export)


def test_eval_cls_table_json_and_self_ensemble(backbone_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    args = ["eval-cls", "--backbone", str(backbone_file), str(backbone_file), "--format", "digits", "--limit", "6", "--json", str(out), "--threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "digits:val: 6 images, 10 classes" in text and "top-5 err" in text
    rows = json.loads(out.read_text())["rows"]
    assert [(r["models"], r["crops"], r["cost"]) for r in rows] == [(1, 1, 1), (1, 10, 10), (1, 144, 144)] * 2 + [(2, 1, 2), (2, 10, 20), (2, 144, 288)]
    for single, ensemble in zip(rows[:3], rows[6:]):  # a model averaged with itself is itself
        assert (single["top1"], single["top5"]) == (ensemble["top1"], ensemble["top5"]) and single["images"] == 6


def test_eval_cls_bad_input(backbone_file: Path, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(1)}, junk)
    assert main(["eval-cls", "--backbone", str(junk), "--format", "digits"]) == 2
    assert f"{junk}: not an incdet backbone file" in capsys.readouterr().err
    other = tmp_path / "three_classes.pt"
    spec = BackboneSpec("googlenet", ("a", "b", "c"), 8, width=0.25, low_res=True)
    save_backbone(other, spec, spec.build())
    assert main(["eval-cls", "--backbone", str(other), "--format", "digits"]) == 2
    assert "differ from the given" in capsys.readouterr().err
    assert main(["eval-cls", "--backbone", str(backbone_file), str(other), "--format", "digits", "--limit", "1"]) == 2
    assert "an ensemble needs one class list" in capsys.readouterr().err
