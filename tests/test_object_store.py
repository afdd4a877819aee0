"""Images given as object-store URLs (``s3://bucket/prefix``), read from a real S3-compatible server
started on this machine (moto's, in a process of its own): the same detections as from a folder, with
either engine, resumed by the objects' stamps, and a missing prefix refused in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyarrow import fs

import incdet.io
from incdet.cli import main
from incdet.data.demo import generate_demo
from incdet.errors import InputError
from incdet.weights import DEMO_REGION_MODELS

BUCKET = "incdet-images"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server holding the six demo test images under ``s3://BUCKET/images/`` (one of them
    under ``sub/``); the environment points pyarrow at it, as a user's AWS variables would."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    root = tmp_path_factory.mktemp("s3")
    generate_demo(root / "demo", seed=0, counts={"train": 0, "val": 0, "test": 6})
    images = root / "demo" / "test" / "images"
    (images / "sub").mkdir()
    first = sorted(images.glob("*.jpg"))[0]
    first.rename(images / "sub" / first.name)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
                patch.setenv(name, value)
            incdet.io._store.cache_clear()
            store = fs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True, **_keys())
            for _ in range(50):  # the server starts in a second or two
                try:
                    store.create_dir(BUCKET)
                    break
                except OSError:
                    time.sleep(0.2)
            for path in sorted(images.rglob("*.jpg")):
                with store.open_output_stream(f"{BUCKET}/images/{path.relative_to(images).as_posix()}") as out:
                    out.write(path.read_bytes())
            yield images
    finally:
        incdet.io._store.cache_clear()
        server.terminate()
        server.wait()


def _keys() -> dict[str, str]:
    return {"access_key": CREDENTIALS["AWS_ACCESS_KEY_ID"], "secret_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region": CREDENTIALS["AWS_DEFAULT_REGION"]}


DETECT = ["--model", str(DEMO_REGION_MODELS[0]), "--no-multibox", "--batch-images", "2", "--workers", "1"]


def test_detections_from_a_bucket_equal_those_from_the_folder_and_a_shard_resumes_by_the_objects_stamps(s3, tmp_path, capsys) -> None:
    assert main(["detect", str(s3), "--out", str(tmp_path / "folder.json"), *DETECT]) == 0
    assert main(["detect", f"s3://{BUCKET}/images/", "--out", str(tmp_path / "bucket.json"), *DETECT]) == 0
    assert (tmp_path / "bucket.json").read_bytes() == (tmp_path / "folder.json").read_bytes()
    assert b'"file_name": "sub/' in (tmp_path / "bucket.json").read_bytes()  # keyed by the path under the prefix
    shard = ["detect", f"s3://{BUCKET}/images", "--out", str(tmp_path / "shard.json"), "--shard", "1/2", *DETECT]
    assert main(shard) == 0  # a shard keeps its work folder, for --merge
    capsys.readouterr()
    assert main(shard) == 0
    assert "resuming: 4 of 4 images are done" in capsys.readouterr().out  # groups of 2: the shard's 2 of 3


def test_the_ray_engine_reads_the_bucket_on_its_actors(s3, tmp_path) -> None:
    assert main(["detect", str(s3), "--out", str(tmp_path / "folder.json"), *DETECT]) == 0
    assert main(["detect", f"s3://{BUCKET}/images", "--out", str(tmp_path / "ray.json"), "--engine", "ray", *DETECT]) == 0
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "folder.json").read_bytes()


def test_a_missing_prefix_is_refused_in_one_line(s3, tmp_path, capsys) -> None:
    assert main(["detect", f"s3://{BUCKET}/nothing-here", "--out", str(tmp_path / "d.json"), *DETECT]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"incdet: error: s3://{BUCKET}/nothing-here: no such object or prefix", err


def test_without_pyarrow_a_url_is_refused_in_one_line_saying_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(InputError, match=r"^s3://bucket: object-store URLs are read with pyarrow: pip install pyarrow"):
        incdet.io.collect_images(["s3://bucket/photos"])
