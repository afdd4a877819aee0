"""The shipped class list against a devkit's meta_det.mat (written with scipy.io.savemat in the
devkit's struct layout): the same order passes, any other is refused with a one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ilsvrc import write_meta_det, write_release

from incdet.cli import main
from incdet.data.dataset import load_dataset
from incdet.data.ilsvrc_classes import (
    CLASSES_FILE,
    check_meta_det,
    det_synsets,
    read_meta_det,
)
from incdet.data.ilsvrc_layout import locate
from incdet.errors import InputError


def meta_path(root: Path, release: str) -> Path:
    return root / "devkit/data/meta_det.mat" if release == "2015" else root / "ILSVRC2014_devkit/data/meta_det.mat"


@pytest.mark.parametrize("field", ["ILSVRC2013_DET_ID", "ILSVRC2014_DET_ID", "ILSVRC2015_DET_ID"])
def test_the_devkit_order_is_read_and_accepted(tmp_path: Path, field: str):
    write_meta_det(tmp_path / "meta_det.mat", id_field=field)
    rows = read_meta_det(tmp_path / "meta_det.mat")
    assert rows == [(s.index, s.wnid, s.name) for s in det_synsets()]
    check_meta_det(tmp_path / "meta_det.mat")


@pytest.mark.parametrize("release", ["2015", "2014"])
def test_another_class_order_is_refused_naming_both_files(tmp_path: Path, release: str, capsys):
    root = write_release(tmp_path, release)
    meta = meta_path(root, release)
    synsets = list(det_synsets())
    synsets[27], synsets[28] = synsets[28], synsets[27]  # bow before bow tie
    write_meta_det(meta, synsets)
    with pytest.raises(InputError) as error:
        load_dataset(root)
    assert str(error.value) == (
        f"{meta}: class order differs from incdet's class list {CLASSES_FILE}: synsets(28) is "
        f"(DET_ID 28, n02879718, 'bow') here but (DET_ID 28, n02883205, 'bow tie') in ilsvrc_det_classes.tsv")
    assert main(["eval", "--gt", str(root), "--dets", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"incdet: error: {meta}: class order differs")


def test_meta_without_the_devkit_fields_or_not_a_mat_file(tmp_path: Path):
    import numpy as np
    import scipy.io

    bad = tmp_path / "meta_det.mat"
    scipy.io.savemat(bad, {"classes": np.array(["a", "b"], object)})
    with pytest.raises(InputError, match="expected a struct array 'synsets' with fields ILSVRC20xx_DET_ID"):
        check_meta_det(bad)
    bad.write_text("not a mat file")
    with pytest.raises(InputError, match=r"meta_det.mat: cannot read as a MATLAB .mat file"):
        check_meta_det(bad)
    write_meta_det(bad, list(det_synsets())[:150])
    with pytest.raises(InputError, match="has 150 synsets, incdet's class list .* has 200"):
        check_meta_det(bad)


def test_no_meta_det_means_no_check(tmp_path: Path):
    root = write_release(tmp_path, "2014", meta=False)
    layout = locate(root, None)[0]
    assert layout.devkit_data is not None and not (layout.devkit_data / "meta_det.mat").exists()
    ds = load_dataset(root)
    assert "checked against" not in ds.classes_source and len(ds.annotations) == 4
