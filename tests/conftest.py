"""Fixtures several test modules share."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Training on one thread is several times faster than on 2 on the busy 2-core machine; restored afterwards.
    Modules that train throughout use it for every test: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def onnx_cache(tmp_path_factory):
    """onnxruntime's graphs (exported once per network, seconds each) in one folder for the whole run,
    shared with the commands the tests start, never in the user's own cache."""
    import os

    folder = tmp_path_factory.mktemp("incdet-cache")
    before = os.environ.get("INCDET_CACHE")
    os.environ["INCDET_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("INCDET_CACHE")
    else:
        os.environ["INCDET_CACHE"] = before


@pytest.fixture(scope="session")
def make_demo(tmp_path_factory):
    """``make_demo(train, val, test)``: a demo dataset (seed 0) of that many images per split, in a folder of its own."""
    from incdet.data.demo import generate_demo

    def make(train: int, val: int, test: int):
        root = tmp_path_factory.mktemp("demo")
        generate_demo(root, seed=0, counts={"train": train, "val": val, "test": test})
        return root

    return make
