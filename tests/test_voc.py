"""PASCAL-VOC XML: a bad object is dropped and reported, the rest of its file is kept."""

from __future__ import annotations

import pytest

from incdet.data.dataset import load_dataset
from incdet.data.voc import read_voc_xml
from incdet.errors import InputError

XML = """<annotation><filename>a.jpg</filename><size><width>100</width><height>80</height></size>
<object><name>cat</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>
<object><name>cat</name><bndbox><xmin>50</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>
<object><name></name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>6</ymax></bndbox></object>
<object><name>dog</name><bndbox><xmin>x</xmin><ymin>1</ymin><xmax>4</xmax><ymax>6</ymax></bndbox></object>
<object><name>dog</name><bndbox><xmin>61</xmin><ymin>1</ymin><xmax>90</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def test_bad_objects_are_dropped_one_by_one(tmp_path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "a.xml").write_text(XML)
    dataset = load_dataset(tmp_path / "annotations")
    (ann,) = dataset.annotations
    assert ann.labels == ["cat", "dog"]
    assert ann.boxes.tolist() == [[10, 20, 40, 60], [60, 0, 90, 30]]
    messages = dataset.skipped.messages("object")
    assert len(messages) == 3 and all(m.startswith(str(tmp_path / "annotations" / "a.xml")) for m in messages)
    assert "object 1 (cat): xmax < xmin or ymax < ymin (50, 21, 40, 60)" in messages[0]
    assert "object 2: empty <name>" in messages[1]
    assert "object 3 (dog): missing or non-numeric bndbox" in messages[2]


def test_without_a_report_a_bad_object_is_an_error(tmp_path) -> None:
    (tmp_path / "a.xml").write_text(XML)
    with pytest.raises(InputError, match=r"a\.xml: object 1 \(cat\): xmax < xmin"):
        read_voc_xml(tmp_path / "a.xml")
