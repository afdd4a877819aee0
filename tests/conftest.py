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
