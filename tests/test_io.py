import os

import cv2
import numpy as np
import pytest

from incdet.errors import InputError
from incdet.io import atomic_path, collect_images, list_images, read_image, write_json


def test_grayscale_rgba_and_16_bit_images_become_8_bit_rgb(tmp_path):
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    rgba = np.dstack([np.full((12, 20, 3), (10, 20, 30), np.uint8), np.full((12, 20), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((12, 20, 3), 65535, np.uint16))
    for name in ("gray.png", "rgba.png", "deep.png"):
        image = read_image(tmp_path / name)
        assert image.shape == (12, 20, 3) and image.dtype == np.uint8
    assert (read_image(tmp_path / "gray.png")[..., 0] == gray).all()
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [30, 20, 10]  # BGR on disk -> RGB
    assert (read_image(tmp_path / "deep.png") == 255).all()


def test_unreadable_files_give_one_line_errors(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is text, not a JPEG")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("notes.jpg", "empty.png", "missing.png"):
        with pytest.raises(InputError) as info:
            read_image(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name)) and "\n" not in str(info.value)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no image files"):
        list_images(tmp_path)


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"version": 2, "trunc')
            raise RuntimeError("crash while writing")
    assert target.read_text() == '{\n "version": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_collect_images_keys_by_relative_path_sorted_once_and_refuses_clashing_keys(tmp_path):
    for folder in ("a", "b", "a/sub", "a/.hidden"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "a" / "y.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "dir.png").mkdir()  # a folder named like an image is not an image
    a = tmp_path / "a"
    records = collect_images([a / "x.png", a])
    assert [(r.key, r.path, r.image_id) for r in records] == [
        ("sub/x.png", a / "sub" / "x.png", 0), ("x.png", a / "x.png", 1), ("y.png", a / "y.png", 2)]
    with pytest.raises(InputError, match="has the key 'x.png' of"):
        collect_images([a, tmp_path / "b"])


def _killed_while_writing(path) -> None:
    """A writer killed by SIGKILL between creating its temporary file and the rename."""
    import subprocess
    import sys

    code = ("import os, sys; from incdet.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half'); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=False)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path):
    _killed_while_writing(tmp_path / "out.json")
    orphans = [p.name for p in tmp_path.iterdir()]
    assert len(orphans) == 1 and orphans[0].startswith(".out.json.")
    with atomic_path(tmp_path / "other.json") as tmp:  # another output leaves it alone
        tmp.write_text("{}")
    assert (tmp_path / orphans[0]).exists()
    host = orphans[0].split(".")[3].rsplit("-", 1)[0]  # .out.json.HOST-PID.RANDOM.json
    live = tmp_path / f".out.json.{host}-{os.getppid()}.abc.json"  # this test's parent is alive
    live.write_text("a live writer's")
    write_json(tmp_path / "out.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["other.json", "out.json", live.name])


def test_a_checkpoint_save_clears_every_killed_writers_temporary_file_in_its_folder(tmp_path):
    from incdet.train.run_dir import AtomicCheckpointIO

    # A run killed while it wrote epoch 3's checkpoint; the resumed run saves epoch 4's.
    _killed_while_writing(tmp_path / "epoch=3-step=12.ckpt")
    (orphan,) = tmp_path.iterdir()
    writer, _, pid_rest = orphan.name.rpartition("-")  # .epoch=3-step=12.ckpt.HOST-PID.RANDOM.ckpt
    live = tmp_path / f"{writer}-{os.getppid()}.{pid_rest.split('.', 1)[1]}"  # this test's parent is alive
    live.write_text("a live writer's")
    AtomicCheckpointIO().save_checkpoint({"epoch": 4}, tmp_path / "epoch=4-step=16.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["epoch=4-step=16.ckpt", live.name])
