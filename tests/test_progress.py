"""Progress of ``incdet detect`` and ``propose`` when stderr is not a terminal (a scheduler's log, nohup,
a pipe), where tqdm's bar prints nothing (issue 24): one line every so often, and one at the end."""

from __future__ import annotations

import re

import pytest
import torch
from bad_input_corpus import photo, run

from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.commands._batch import say
from incdet.engine import run as engine_run
from incdet.engine.run import ProgressLines
from incdet.io import write_image

LINE = re.compile(r"detect: (\d+)/(\d+) images \((\d+\.\d)%\), ([0-9.e+-]+) images/s, (about .+ left|took .+)")


def test_detect_prints_progress_lines_to_a_log(tmp_path) -> None:
    spec = RegionClassifierSpec(arch="googlenet", classes=("cat", "cup"), input_size=32, context_pad=2, width=0.125)
    torch.manual_seed(0)
    save_region_classifier(tmp_path / "model.pt", spec, spec.build().eval())
    for i, name in enumerate(("chelsea", "coffee", "rocket")):
        write_image(tmp_path / "images" / f"{i}.png", photo(name, (64, 48)))
    result = run("detect", tmp_path / "images", "--model", tmp_path / "model.pt", "--out", tmp_path / "d.json",
                 "--batch-images", "1", "--workers", "0", "--progress-seconds", "0")  # stderr: a StringIO, no terminal
    assert result.code == 0
    lines = [line for line in result.err.splitlines() if line.startswith("detect: ")]
    assert len(lines) == 3, result.err  # --progress-seconds 0: one per batch
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(int(m[1]), int(m[2])) for m in parsed] == [(1, 3), (2, 3), (3, 3)]
    assert all(float(m[4]) > 0 for m in parsed)
    assert parsed[0][5].startswith("about ") and parsed[-1][3] == "100.0" and parsed[-1][5].startswith("took ")


def test_lines_come_every_5_percent_or_every_interval_whichever_first(monkeypatch, capsys) -> None:
    now = [0.0]
    monkeypatch.setattr(engine_run.time, "monotonic", lambda: now[0])
    progress = ProgressLines("detect", 40000, 60, say)
    now[0] = 1200 / 2.41
    progress.update(1200)  # 3%, and the first minute is over
    assert capsys.readouterr().err == "detect: 1200/40000 images (3.0%), 2.41 images/s, about 4 h 28 min left\n"
    now[0] += 30
    progress.update(1999)  # 8%, but 5% of the images (2000) have not passed since the last line, nor a minute
    assert capsys.readouterr().err == ""
    progress.update(1)
    assert capsys.readouterr().err.startswith("detect: 3200/40000 images (8.0%), ")
    progress.update(40000 - 3200)
    assert capsys.readouterr().err.startswith("detect: 40000/40000 images (100.0%), ")


def test_a_small_job_prints_at_least_every_100_images_and_at_its_end(monkeypatch, capsys) -> None:
    monkeypatch.setattr(engine_run.time, "monotonic", lambda: 0.0)  # the interval never passes
    progress = ProgressLines("proposals", 150, 60, say)
    for _ in range(149):
        progress.update(1)
    progress.update(1)
    assert [line.split(" images")[0] for line in capsys.readouterr().err.splitlines()] == ["proposals: 100/150", "proposals: 150/150"]


@pytest.mark.parametrize("seconds, text", [(40.2, "41 s"), (89, "89 s"), (95, "2 min"), (3599, "1 h 0 min"), (16100, "4 h 28 min")])
def test_durations_read_as_a_person_would_say_them(seconds, text) -> None:
    assert engine_run._duration(seconds) == text


def test_a_negative_interval_is_refused_before_the_work(tmp_path) -> None:
    result = run("propose", tmp_path, "--out", tmp_path / "p.json", "--progress-seconds", "-1")
    assert result.code == 2 and "--progress-seconds must be 0 or more, got -1.0" in result.error_line()
