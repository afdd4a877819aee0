"""Batch jobs over folders of any size, usable from Python as ``incdet detect`` and ``incdet propose``
use them: :class:`DetectionJob` (the whole pipeline into a COCO-results JSON, through a resumable
work folder) and :class:`ProposalJob` (stage 1 into a resumable proposal store, which is also how
region training fills its stores), and their one-call forms :func:`detect_folder` and
:func:`propose_folder`. A job is opened (everything checked, the finished images found), run on an
engine (:class:`incdet.engine.run.Execution`), then finished::

    from incdet import Pipeline
    from incdet.engine import Execution, detect_folder

    summary = detect_folder(["photos/"], "out/detections.json", Pipeline.from_bundle("runs/mine/bundle"),
                            execution=Execution(workers=4))

Rerunning a job that was killed or interrupted continues where it stopped; ``shard`` takes a
deterministic 1/N of the groups, and :func:`incdet.engine.shards.join_shards` joins the shards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from incdet.engine.plan import Shard, plan_groups
from incdet.engine.run import Execution, RunStats, run_groups
from incdet.engine.steps import DetectStep, Drawing, Loader, ProposeStep, StepFactory, Stored
from incdet.engine.work import Summary, WorkFolder, inputs_digest, work_folder
from incdet.errors import InputError
from incdet.io import check_output_path, collect_images, file_sha256
from incdet.multibox.proposer import Proposer
from incdet.pipeline import Pipeline
from incdet.proposals.files import load_proposals
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import FileStamp, ProposalStore, is_store_path
from incdet.structures import ImageRecord, ImageResult, SkipReport

log = logging.getLogger(__name__)


def open_stored(path: str | Path) -> tuple[Stored, dict[str, str]]:
    """Stored proposals for a job: a proposal store (read per image) or a flat .npz/.json file (read
    whole), and how the job's settings record them."""
    path = Path(path).absolute()  # the Ray engine's tasks may run in another folder
    if is_store_path(path):
        stored = ProposalStore(path, readonly=True)
        return stored, {"file": path.name, **stored.identity()}
    return load_proposals(path), {"file": path.name, "sha256": file_sha256(path)}


def _loader(proposals: str | Path | None, search: SearchSettings) -> tuple[Loader, dict[str, str] | None]:
    """The worker half of a job: stored ``proposals`` read per image (and how the job records them),
    else selective search with ``search`` (recorded by the job itself: None)."""
    if not proposals:
        return Loader(search), None
    stored, record = open_stored(proposals)
    return Loader(None, stored, str(proposals)), record


def _records(images: Sequence[str | Path | ImageRecord]) -> list[ImageRecord]:
    """Image records as given, or collected from files and folders (:func:`incdet.io.collect_images`)."""
    if all(isinstance(image, ImageRecord) for image in images):
        return list(images)
    return collect_images(images)


class DetectionJob:
    """``pipeline`` over ``images`` (files, folders or records) into the COCO-results JSON ``out``,
    through the work folder ``OUT.parts/`` (:mod:`incdet.engine.work`): stored ``proposals`` (a
    store or flat file) instead of searching, each image drawn with ``drawing``, ``group_size``
    images per device batch and unit of resuming, ``shard`` of the groups. Opening it checks the
    outputs and that a work folder left by an earlier run holds the same job; ``done`` images are
    not redone."""

    def __init__(self, images: Sequence[str | Path | ImageRecord], out: str | Path, pipeline: Pipeline, *,
                 proposals: str | Path | None = None, drawing: Drawing | None = None, group_size: int = 8,
                 shard: Shard = Shard()) -> None:
        if group_size < 1:
            raise InputError(None, f"--batch-images must be at least 1, got {group_size}")
        self.out, self.work = self.check_outputs(out, shard, drawing)
        self.shard, self.pipeline, self.drawing = shard, pipeline, drawing
        records = _records(images)
        self.loader, record = _loader(proposals, pipeline.proposer.search_settings)
        record = record or {"search": pipeline.proposer.search_settings.to_dict()}
        self.settings = {**pipeline.settings(), "proposals": record, "group_size": group_size,
                         "drawing": {"folder": str(drawing.folder.resolve()), "threshold": drawing.threshold} if drawing else None}
        self.folder = WorkFolder.open(self.work, self.settings, records, shard)
        self.groups = plan_groups(records, group_size, shard)
        self.todo = [group for group in self.groups if not self.folder.done(group)]
        self.total = sum(len(g) for g in self.groups)
        self.done = self.total - sum(len(g) for g in self.todo)

    @staticmethod
    def check_outputs(out: str | Path, shard: Shard = Shard(), drawing: Drawing | None = None) -> tuple[Path, Path]:
        """That the job's outputs can be written (call it before loading the models, to fail in a
        second): the JSON, the work folder and the drawings' folder. Returns the JSON's and the work folder's paths."""
        out = check_output_path(out)
        work = check_output_path(work_folder(out, shard), folder=True)
        if drawing is not None:
            check_output_path(drawing.folder, folder=True)
        return out, work

    def run(self, execution: Execution = Execution()) -> RunStats:
        """Detect in every image not yet done; each group's lines (and drawings) are saved as it finishes."""
        if execution.engine == "local":
            step = DetectStep(self.pipeline, self.drawing)
        else:  # Ray's actors check each model file against the SHA-256 recorded here; execution.device says what they run on
            step = StepFactory.for_nodes("detect", {**self.pipeline.arguments, "device": execution.device}, self.settings,
                                         drawing=self.drawing)
        with self.folder.writer(self.pipeline.classes) as writer:
            def write(results: list[ImageResult]) -> None:
                if self.drawing is not None:
                    self.drawing.write(results)  # before the lines that mark the images done
                writer.write(results)

            return run_groups(self.todo, self.loader, step, execution, write, desc="detect")

    @property
    def saved(self) -> int:
        """Images whose results are in the work folder (an interrupted run's progress)."""
        return self.folder.count

    def finish(self) -> Summary:
        """The whole job's COCO-results JSON (a shard: its work folder marked complete, for joining)."""
        return self.folder.finish(self.out if self.shard.whole else None)


def detect_folder(images: Sequence[str | Path | ImageRecord], out: str | Path, pipeline: Pipeline | None = None, *,
                  execution: Execution = Execution(), **options: Any) -> Summary:
    """:class:`DetectionJob` opened, run and finished in one call (``options``: its keywords);
    ``pipeline`` defaults to the shipped demo detector. KeyboardInterrupt if interrupted (rerun to resume)."""
    job = DetectionJob(images, out, pipeline or Pipeline(), **options)
    if job.done:
        log.info("resuming: %d of %d images are done in %s", job.done, job.total, job.work)
    if job.run(execution).interrupted:
        raise KeyboardInterrupt
    return job.finish()


def store_settings(proposer: Proposer, stored: dict[str, str] | None = None) -> dict[str, Any]:
    """What a proposal store records its boxes were made with: the search settings (exactly as region
    training records them, so that both share stores) or the stored proposals they came from, and the
    MultiBox network merged in, if any."""
    settings = proposer.search_settings.to_dict() if stored is None else {"proposals": stored}
    if proposer.multibox_path is not None:
        settings.update(proposer.settings())
    return settings


class ProposalJob:
    """Stage 1 (``proposer``) for ``images`` (files, folders or records) into the proposal ``store``
    (a path, or a store already open): selective search, or the boxes of stored ``proposals``, with
    MultiBox's merged in. Each image's row is committed as its group finishes, so a rerun does only
    what is missing (``redo``: everything again). ``keep_sources``: each result also holds selective
    search's and MultiBox's own boxes (for a report)."""

    def __init__(self, images: Sequence[str | Path | ImageRecord], store: str | Path | ProposalStore, proposer: Proposer, *,
                 proposals: str | Path | None = None, group_size: int = 1, shard: Shard = Shard(), redo: bool = False,
                 keep_sources: bool = False) -> None:
        if group_size < 1:
            raise InputError(None, f"--batch-images must be at least 1, got {group_size}")
        self.proposer, self.keep_sources = proposer, keep_sources
        self.records = _records(images)
        self.loader, record = _loader(proposals, proposer.search_settings)
        self.settings = store_settings(proposer, record)
        self.owns_store = not isinstance(store, ProposalStore)
        if isinstance(store, ProposalStore):
            self.store = store
        else:
            self.store = ProposalStore(check_output_path(store), self.settings)
            self.store.record_job(inputs=inputs_digest(self.records), shard=[shard.index, shard.count], complete=False)
        # MultiBox batches fix the last bits of its boxes, so with it the groups must be fixed too.
        self.groups = plan_groups(self.records, group_size if proposer.multibox_path is not None else 1, shard)
        self.todo = self.groups if redo else [g for g in self.groups if not all(is_stored(self.store, r) for r in g)]
        self.total = sum(len(g) for g in self.groups)
        self.done = self.total - sum(len(g) for g in self.todo)

    def run(self, execution: Execution = Execution(), on_result: Callable[[ImageResult], None] | None = None) -> RunStats:
        """Propose for every image not yet stored; ``on_result`` sees every result (a skip included)."""
        if execution.engine == "local":
            step = ProposeStep(self.proposer, self.keep_sources)
        else:
            step = StepFactory.for_nodes("propose", {"search": self.proposer.search_settings, "multibox": self.proposer.multibox_path,
                                                     "multibox_settings": self.proposer.multibox_settings, "device": execution.device},
                                         self.settings, keep_sources=self.keep_sources)

        def write(results: list[ImageResult]) -> None:
            for result in results:
                if result.error is None:
                    store_result(self.store, result)
                if on_result is not None:
                    on_result(result)

        return run_groups(self.todo, self.loader, step, execution, write, desc="proposals")

    def present(self) -> list[ImageRecord]:
        """The job's images the store holds, in order."""
        return [r for g in self.groups for r in g if r.key in self.store]

    def finish(self) -> None:
        """Mark the store's job complete (a shard's store may then be joined)."""
        self.store.record_job(complete=True)

    def close(self) -> None:
        """Close the store, if the job opened it."""
        if self.owns_store:
            self.store.close()


def propose_folder(images: Sequence[str | Path | ImageRecord], store: str | Path, proposer: Proposer | None = None, *,
                   execution: Execution = Execution(), on_result: Callable[[ImageResult], None] | None = None,
                   **options: Any) -> SkipReport:
    """:class:`ProposalJob` opened, run and finished in one call (``options``: its keywords); the
    proposer defaults to selective search alone; ``on_result`` sees every image's result. Returns the
    images that could not be proposed for (they get no row, so a rerun tries them again).
    KeyboardInterrupt if interrupted."""
    job = ProposalJob(images, store, proposer or Proposer(device="cpu"), **options)
    skipped = SkipReport()
    try:
        def seen(result: ImageResult) -> None:
            if result.error is not None:
                skipped.skip("image", None, result.error)
            if on_result is not None:
                on_result(result)

        stats = job.run(execution, seen)
        if stats.interrupted:
            raise KeyboardInterrupt
        job.finish()
    finally:
        job.close()
    return skipped


def is_stored(store: ProposalStore, record: ImageRecord) -> bool:
    """True if ``store`` holds boxes made from ``record``'s file as it is now."""
    try:
        return store.is_current(record.key, record.path)
    except OSError:  # the file is gone or unreadable: not done; the search will say why
        return False


def store_result(store: ProposalStore, result: ImageResult) -> None:
    """Keep one image's stage-1 result (with its size, file stamp and search time) in ``store``."""
    store.put(result.image.key, result.proposals, width=result.size[0], height=result.size[1],
              stamp=FileStamp.of(result.image.path), seconds=result.seconds.get("search"))
