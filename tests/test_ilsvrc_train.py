"""ILSVRC ground truth for training: the validation blacklist drops whole images (as R-CNN did),
missing images are skipped by list file and line, and partial positives (label 0) are kept and
recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ilsvrc import (
    BANANA,
    BIRD,
    DOG,
    VAL,
    class_index,
    list_dir,
    val_folders,
    write,
    write_release,
)

from incdet.data.dataset import load_dataset

NAMES = [f"{n}.JPEG" for n, *_ in VAL]


@pytest.mark.parametrize("release", ["2015", "2014"])
def test_training_leaves_out_every_blacklisted_image(tmp_path: Path, release: str):
    root = write_release(tmp_path, release)
    blacklist = next(tmp_path.rglob("*det_validation_blacklist.txt"))
    evaluated = load_dataset(root)
    assert [a.filename for a in evaluated.annotations] == NAMES  # evaluation ignores only the pair
    assert evaluated.ignored == {NAMES[1]: frozenset({DOG})}
    trained = load_dataset(root, purpose="train")
    assert [a.filename for a in trained.annotations] == [NAMES[0], NAMES[2], NAMES[3]]  # its bird goes too
    assert trained.ignored == {} and NAMES[1] not in trained.image_numbers
    assert trained.skipped.messages("image") == [
        f"{NAMES[1]}: in the validation blacklist {blacklist} for {DOG}; left out of training as R-CNN did"]


def test_blacklist_numbers_are_val_txt_ones_also_for_a_renumbered_half(tmp_path: Path):
    root = write_release(tmp_path, "2014")
    val1 = list_dir("2014", root) / "val1.txt"  # R-CNN's val1: its own numbering, 1..N
    write(val1, f"{VAL[1][0]} 1\n{VAL[3][0]} 2\n")
    half = load_dataset(val1)
    assert half.image_numbers == {NAMES[1]: 1, NAMES[3]: 2}  # a submission on val1 uses val1's numbers
    assert half.ignored == {NAMES[1]: frozenset({DOG})}  # blacklist line "2 dog" is val.txt's image 2
    trained = load_dataset(val1, purpose="train")
    assert [a.filename for a in trained.annotations] == [NAMES[3]]


def test_training_skips_listed_images_that_are_missing(tmp_path: Path):
    root = write_release(tmp_path, "2015")
    images, _ = val_folders("2015", root)
    (images / NAMES[3]).unlink()  # its XML is still there: evaluation needs only that
    assert len(load_dataset(root).annotations) == 4
    trained = load_dataset(root, purpose="train")
    val_txt = list_dir("2015", root) / "val.txt"
    assert f"{val_txt}:4: image {images / NAMES[3]} not found" in trained.skipped.messages("image")
    assert NAMES[3] not in [a.filename for a in trained.annotations]
    with pytest.raises(ValueError, match="purpose must be one of"):
        load_dataset(root, purpose="test")


@pytest.mark.parametrize("release", ["2015", "2014"])
def test_partial_positive_lists_and_their_bad_lines(tmp_path: Path, release: str):
    root = write_release(tmp_path, release)
    lists = list_dir(release, root)
    k = class_index(BANANA)
    bad = lists / (f"train_{k}.txt" if release == "2015" else f"train_part_{k}.txt")
    line = "ILSVRC2013_train/n07753592/n07753592_5 2" if release == "2015" else "n07753592/n07753592_5 1"
    write(bad, bad.read_text() + line + "\n")
    ds = load_dataset(root, split="train", purpose="train")
    expected = "'<image> <label>' with label 1, 0 or -1" if release == "2015" else "'<image>' (label 0)"
    assert ds.skipped.messages("line") == [f"{bad}:2: expected {expected}, got {line!r}"]
    (partial,) = ds.partial  # the image itself is kept, its banana box is ground truth
    assert BANANA in partial and ds.partial[partial] == frozenset({BANANA})
    assert len(ds.annotations) == 3 and ds.skipped.counts() == {"line": 1}
    one_list = load_dataset(lists / (f"train_{class_index(BIRD)}.txt" if release == "2015"
                                     else f"train_pos_{class_index(BIRD)}.txt"))
    # 2015's train_<k>.txt lists the class's negatives too, 2014's train_pos_<k>.txt only positives
    expected = [[BIRD], [BANANA], []] if release == "2015" else [[BIRD]]
    assert [a.labels for a in one_list.annotations] == expected and one_list.partial == {}
