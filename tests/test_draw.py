"""Drawn detections (``incdet detect --draw``): labels readable at any image size (issue 24)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from incdet.postprocess.draw import draw_detections
from incdet.structures import Detections

RED = (0xE6, 0x19, 0x4B)  # class 0's colour; its label is written in white


def _dets(box: list[float], label: int = 0, score: float = 0.93) -> Detections:
    return Detections(boxes=torch.tensor([box]), scores=torch.tensor([score]), labels=torch.tensor([label]),
                      source=torch.zeros(1))


def _ink(drawn: np.ndarray) -> np.ndarray:
    """Rows and columns of the label's white text: nothing else in these drawings is that bright."""
    return np.argwhere(drawn.min(axis=2) > 200)


def test_a_label_on_a_big_photo_is_as_readable_as_on_a_small_one() -> None:
    image = np.full((3000, 4000, 3), 100, np.uint8)
    drawn = draw_detections(image, _dets([1000, 1000, 2500, 2200]), ["cat"])
    ink = _ink(drawn)
    text_height = ink[:, 0].max() - ink[:, 0].min() + 1
    assert text_height >= 0.015 * 3000  # "cat 0.93" is 45 px or more high
    assert ink[:, 0].max() < 1000 and ink[:, 1].min() >= 1000  # above the box, from its left edge
    background = (drawn[ink[:, 0].min() - 2, ink[:, 1].min():ink[:, 1].max()] == RED).all(axis=1)
    assert background.all()  # on a filled box of the class's colour
    assert (image == 100).all()  # the caller's image is not drawn on


@pytest.mark.parametrize("box, name", [([5, 3, 60, 70], "cat"), ([60, 50, 99, 79], "motorcycle")])
def test_a_label_on_a_tiny_image_stays_inside_it(box, name) -> None:
    image = np.full((80, 100, 3), 100, np.uint8)
    drawn = draw_detections(image, _dets(box), [name])
    ink = _ink(drawn)
    assert len(ink) > 20  # the text is there ...
    assert ink[:, 0].min() > 0 and ink[:, 1].min() > 0 and ink[:, 0].max() < 79 and ink[:, 1].max() < 99  # ... whole
    assert ink[:, 0].max() - ink[:, 0].min() + 1 >= 6  # and still legible


def test_nothing_above_the_threshold_leaves_the_image_as_it_is() -> None:
    image = np.full((80, 100, 3), 100, np.uint8)
    assert draw_detections(image, _dets([5, 3, 60, 70], score=0.4), ["cat"]) is image
