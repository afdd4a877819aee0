"""Model bundles (incdet.bundle): one folder that holds a whole detector. A bundle of the shipped
ensemble detects exactly as the defaults do, from Python and from ``incdet detect``; options given
explicitly override its settings; a damaged bundle is a one-line error naming the file; a failed
write leaves no half bundle; ``incdet export`` writes one ONNX per member."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from incdet import bundle as bundle_module
from incdet.bundle import FORMAT, is_bundle, read_bundle, write_bundle
from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.cli import main
from incdet.data.demo import generate_demo
from incdet.errors import InputError
from incdet.io import read_image
from incdet.multibox.propose import MultiBoxSettings
from incdet.pipeline import Pipeline, SelectionSettings
from incdet.proposals.settings import SearchSettings
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS

TINY = RegionClassifierSpec(arch="googlenet", classes=("cat", "cup"), input_size=32, context_pad=2, width=0.125)


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, seed=0, counts={"train": 1, "val": 1, "test": 2})
    return root / "test" / "images"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A bundle of the shipped ensemble and MultiBox network with the default settings."""
    folder = tmp_path_factory.mktemp("bundles") / "shipped"
    return write_bundle(folder, DEMO_REGION_MODELS, DEMO_MULTIBOX, search=SearchSettings(),
                        provenance={"data": "incdet data demo --seed 0"}, results={"val_map": {"ensemble": 0.83}})


@pytest.fixture
def tiny(tmp_path):
    """A bundle of two tiny untrained members whose files are both named model.pt."""
    paths = []
    for seed, sub in enumerate(("a", "b")):
        torch.manual_seed(seed)
        (tmp_path / sub).mkdir()
        paths.append(tmp_path / sub / "model.pt")
        save_region_classifier(paths[-1], TINY, TINY.build().eval())
    return write_bundle(tmp_path / "tiny", paths, None, search=SearchSettings(superpixel_scale=1.0),
                        selection=SelectionSettings(score_threshold=0.2), recipe={"config": "tiny.yaml"})


def test_a_bundle_records_its_files_and_settings(shipped, tiny):
    manifest = json.loads((shipped.folder / "bundle.json").read_text())
    assert manifest["format"] == FORMAT and manifest["classes"] == list(shipped.classes)
    assert [m["file"] for m in manifest["members"]] == [f"members/{p.stem}.pt" for p in DEMO_REGION_MODELS]
    assert [m["sha256"] for m in manifest["members"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in DEMO_REGION_MODELS]
    assert [m["input_size"] for m in manifest["members"]] == [64, 72, 80] and all(m["bbox_reg"] for m in manifest["members"])
    assert manifest["multibox"]["file"] == "multibox.pt" and manifest["multibox"]["settings"]["top_n"] == 200
    assert manifest["search"] == SearchSettings().to_dict() and manifest["selection"]["nms_iou"] == 0.3
    assert manifest["results"] == {"val_map": {"ensemble": 0.83}}
    assert shipped.members == [shipped.folder / f"members/{p.name}" for p in DEMO_REGION_MODELS]
    assert shipped.sha256 == hashlib.sha256((shipped.folder / "bundle.json").read_bytes()).hexdigest()
    # Two members named model.pt get unique names; the settings come back as their dataclasses.
    assert [p.name for p in tiny.members] == ["model.pt", "model-2.pt"] and tiny.multibox is None
    assert tiny == read_bundle(tiny.folder) and tiny.selection == SelectionSettings(score_threshold=0.2)
    assert tiny.search == SearchSettings(superpixel_scale=1.0) and tiny.multibox_settings == MultiBoxSettings()
    assert is_bundle(tiny.folder) and not is_bundle(tiny.folder / "members") and not is_bundle(tiny.folder / "bundle.json")
    named = write_bundle(tiny.folder.with_name("named"), tiny.members, None, search=tiny.search, names=["first", "second"])
    assert [p.name for p in named.members] == ["first.pt", "second.pt"]  # as a recipe names its members


def test_the_shipped_bundle_detects_exactly_as_the_default_pipeline(shipped, demo_images):
    images = [read_image(p) for p in sorted(demo_images.iterdir())]
    default, bundled = Pipeline(), Pipeline.from_bundle(shipped.folder)
    assert bundled.bundle == shipped and default.bundle is None
    expected, found = default(images), bundled(images)
    assert len(found) == 2 and all(len(d) for d in found)
    for a, b in zip(expected, found):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.source, b.source)
    # A job records which bundle it ran, and only then (resumed jobs compare the record byte for byte).
    assert bundled.settings()["bundle"] == {"folder": "shipped", "sha256": shipped.sha256}
    assert "bundle" not in default.settings() and bundled.settings()["models"] == default.settings()["models"]
    # Keywords override the bundle's values; Pipeline(**config) rebuilds the same detector.
    other = Pipeline.from_bundle(shipped.folder, multibox=None, selection=SelectionSettings(0.5), runtime="torch")
    assert other.proposer.multibox is None and other.selection.score_threshold == 0.5 and other.runtime == "torch"
    assert Pipeline(**other.arguments).settings() == {k: v for k, v in other.settings().items() if k != "bundle"}
    with pytest.raises(TypeError, match="models"):
        Pipeline.from_bundle(shipped.folder, models=DEMO_REGION_MODELS)


def test_detect_with_the_bundle_writes_what_the_defaults_write(shipped, demo_images, tmp_path):
    def detect(name: str, *options: str) -> bytes:
        out = tmp_path / f"{name}.json"
        assert main(["detect", str(demo_images), "--out", str(out), "--workers", "1", *options]) == 0
        return out.read_bytes()

    default = detect("default")
    assert detect("bundle", "--model", str(shipped.folder)) == default
    records = json.loads(default)
    # The bundle's threshold, not the option's default, unless the option is given.
    strict = write_bundle(tmp_path / "strict", shipped.members, shipped.multibox, search=shipped.search,
                          selection=SelectionSettings(score_threshold=0.3))
    assert json.loads(detect("strict", "--model", str(strict.folder))) == [r for r in records if r["score"] > 0.3]
    given = json.loads(detect("given", "--model", str(strict.folder), "--score-threshold", "0.5"))
    assert given == [r for r in records if r["score"] > 0.5] and 0 < len(given) < len(records)


@pytest.mark.parametrize("problem", ["missing_member", "changed_member", "no_manifest", "unknown_format", "with_another_model"])
def test_a_damaged_bundle_is_a_one_line_error_naming_the_file(tiny, demo_images, tmp_path, capsys, problem):
    folder = tiny.folder
    expected = {
        "missing_member": f"{folder}/members/model-2.pt: missing (the bundle records it)",
        "changed_member": f"{folder}/members/model.pt: SHA-256 ",
        "no_manifest": f"{folder}: not a model bundle (no bundle.json)",
        "unknown_format": f"{folder}/bundle.json: unknown bundle format 'incdet.bundle.v9'",
        "with_another_model": f"{folder}: a model bundle is a whole detector",
    }[problem]
    extra = []
    if problem == "missing_member":
        (folder / "members" / "model-2.pt").unlink()
    elif problem == "changed_member":
        data = bytearray((folder / "members" / "model.pt").read_bytes())
        data[-100] ^= 1
        (folder / "members" / "model.pt").write_bytes(bytes(data))
    elif problem == "no_manifest":
        (folder / "bundle.json").unlink()
    elif problem == "unknown_format":
        manifest = json.loads((folder / "bundle.json").read_text())
        (folder / "bundle.json").write_text(json.dumps({**manifest, "format": "incdet.bundle.v9"}))
    else:
        extra = ["--model", str(tiny.members[0])]
    out = tmp_path / "d.json"
    assert main(["detect", str(demo_images), "--model", str(folder), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("incdet: error: ") and "\n" not in err
    assert expected in err
    if problem == "changed_member":
        assert "differs from the" in err and "the bundle records (a changed or damaged file)" in err
    assert not out.exists() and not (tmp_path / "d.json.parts").exists()
    if problem != "with_another_model":
        assert main(["export", "--model", str(folder), "--out", str(tmp_path / "onnx")]) == 2
        assert expected in capsys.readouterr().err


def test_write_bundle_refuses_members_of_different_classes_and_other_folders(tiny, tmp_path):
    other = tmp_path / "dogs.pt"
    spec = RegionClassifierSpec(arch="googlenet", classes=("dog", "cup"), input_size=32, context_pad=2, width=0.125)
    save_region_classifier(other, spec, spec.build().eval())
    with pytest.raises(InputError) as error:
        write_bundle(tmp_path / "mixed", [tiny.members[0], other], None, search=SearchSettings())
    message = str(error.value)
    assert "\n" not in message and str(other) in message and str(tiny.members[0]) in message and "differ" in message
    assert not (tmp_path / "mixed").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(InputError, match="notes: exists and is not a model bundle"):
        write_bundle(tmp_path / "notes", tiny.members, None, search=SearchSettings())
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


@pytest.mark.parametrize("target", ["new", "old_bundle"])
def test_a_failed_write_leaves_no_half_bundle(tiny, tmp_path, monkeypatch, target):
    """The second copy fails (a full disk, a kill): no folder appears, or the old bundle stays as it was."""
    folder = tmp_path / "out" / "bundle"
    if target == "old_bundle":
        write_bundle(folder, tiny.members[:1], None, search=SearchSettings())
    before = sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file()) if folder.exists() else None
    copies, copy_in = [], bundle_module._copy_in

    def failing_copy(source, target):
        if copies:
            raise OSError(28, "No space left on device")
        copies.append(target)
        return copy_in(source, target)

    monkeypatch.setattr(bundle_module, "_copy_in", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        write_bundle(folder, tiny.members, None, search=SearchSettings())
    assert copies  # it failed midway, after one member was copied
    if target == "new":
        assert not folder.exists()
    else:
        assert sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file()) == before
        assert len(read_bundle(folder).members) == 1
    assert [p.name for p in folder.parent.iterdir()] == ([] if target == "new" else ["bundle"])  # no temporary folder left


def test_export_writes_one_onnx_per_member(tiny, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(tiny.folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model-2.onnx", "model.onnx"]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"wrote {out / 'model.onnx'}", f"wrote {out / 'model-2.onnx'}"]
    assert main(["export", "--model", str(tiny.folder), "--out", str(tmp_path / "one.onnx")]) == 2
    assert "give a folder" in capsys.readouterr().err
