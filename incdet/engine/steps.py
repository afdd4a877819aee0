"""The two halves of a batch job (its steps), shared by the local and the Ray engine.

- :class:`Loader` (CPU workers, one image at a time): decode the image once and give it its
  proposals, searched or read from a store. Whatever goes wrong with one image (corrupt, unreadable,
  an OpenCV error, a failed search, no stored proposals for it) becomes that image's one-line
  ``error``; the batch goes on.
- A step (the device, one group of images at a time): :class:`DetectStep` runs MultiBox, the
  ensemble and NMS of a :class:`incdet.pipeline.Pipeline` batched across the group and draws;
  :class:`ProposeStep` runs stage 1 only. :class:`StepFactory` is the picklable description from which
  a Ray actor builds its step (loading the models once, each checked against the SHA-256 the job
  recorded: :class:`ModelFile`).

A step's results carry only what the driver keeps: a detection result counts its proposals
(:class:`ProposalCounts`) and brings its drawing as PNG bytes, which the driver writes, as it
writes every output of a job.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
import torch

from incdet.errors import InputError
from incdet.io import atomic_path, file_sha256, read_image
from incdet.multibox.proposer import Proposer
from incdet.pipeline import Pipeline
from incdet.postprocess.draw import draw_detections
from incdet.proposals.selective_search import search_proposals
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore, fit_stored
from incdet.structures import Detections, ImageRecord, ImageResult, Proposals
from incdet.weights import shipped_file, shipped_name

# Stored proposals: a proposal store, or a flat file's {key: (N, 4) boxes} read whole.
Stored = Union[ProposalStore, Mapping[str, np.ndarray]]


@dataclass
class Loaded:
    """An image decoded by a worker, with its proposals; ``error`` (one line) when it cannot be used.

    The proposals travel as numpy arrays: pickled tensors would go through torch's shared-memory file
    descriptors, whose sharing thread in the worker prints a traceback when Ctrl-C cuts a transfer.
    """

    image: ImageRecord
    pixels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    source: np.ndarray | None = None
    error: str | None = None
    transient: bool = False  # the error may not happen again (EIO, out of memory): a resumed job retries it
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def proposals(self) -> Proposals | None:
        return None if self.boxes is None else Proposals(torch.from_numpy(self.boxes), torch.from_numpy(self.source))

    @proposals.setter
    def proposals(self, proposals: Proposals | None) -> None:
        self.boxes = None if proposals is None else proposals.boxes.numpy()
        self.source = None if proposals is None else proposals.source.numpy()


@dataclass(frozen=True)
class Loader:
    """Decode an image and attach its proposals: selective search with ``search``, else the boxes
    ``stored`` under its key (``stored_name`` names that file in messages)."""

    search: SearchSettings | None = None
    stored: Stored | None = None
    stored_name: str = ""

    def __call__(self, record: ImageRecord) -> Loaded:
        loaded = Loaded(record)
        start = time.perf_counter()
        try:
            loaded.pixels = read_image(record.path)
        except InputError as exc:
            return _failed(loaded, str(exc))
        except Exception as exc:  # noqa: BLE001 - PermissionError, cv2.error, MemoryError: skip this image, keep the batch
            return _failed(loaded, str(InputError(record.path, f"cannot be read ({_name(exc)}: {exc})")), _transient(exc))
        loaded.seconds["decode"] = time.perf_counter() - start
        start = time.perf_counter()
        try:
            if self.stored is not None:
                loaded.proposals = self._stored(loaded)
            else:
                loaded.proposals = search_proposals(loaded.pixels, self.search or SearchSettings(), record.path)
                loaded.seconds["search"] = time.perf_counter() - start
        except InputError as exc:
            return _failed(loaded, str(exc))
        except Exception as exc:  # noqa: BLE001 - one image that breaks the search must not end a batch of thousands
            return _failed(loaded, str(InputError(record.path, f"selective search failed ({_name(exc)}: {exc})")), _transient(exc))
        return loaded

    def _stored(self, loaded: Loaded) -> Proposals:
        """The image's stored proposals, fitted to it (:func:`fit_stored`, as region training fits them)."""
        record, (height, width) = loaded.image, loaded.pixels.shape[:2]
        made_for = (None, None)
        if isinstance(self.stored, ProposalStore):
            entry = self.stored.entry(record.key)
            proposals = entry.proposals if entry is not None else None
            made_for = (entry.width, entry.height) if entry is not None else made_for
        else:
            boxes = self.stored.get(record.key)
            proposals = Proposals.from_boxes(boxes) if boxes is not None else None
        if proposals is None:
            raise InputError(record.path, f"no proposals for this image (key {record.key!r}) in {self.stored_name}")
        proposals, warnings = fit_stored(proposals, width, height, record.path, self.stored_name, made_for)
        loaded.warnings.extend(warnings)
        return proposals


def _name(exc: Exception) -> str:
    """``PermissionError``, ``cv2.error``: an exception's name as its user would look it up."""
    module = type(exc).__module__
    return type(exc).__name__ if module == "builtins" else f"{module.split('.')[0]}.{type(exc).__name__}"


def _transient(exc: Exception) -> bool:
    """An error of the system rather than of the file (an I/O error of a network disk, memory running
    out): the same image may well succeed on the next run. A corrupt file or a failed decode is not."""
    return isinstance(exc, (OSError, MemoryError))


def _failed(loaded: Loaded, error: str, transient: bool = False) -> Loaded:
    loaded.pixels, loaded.proposals, loaded.error, loaded.transient = None, None, error, transient
    return loaded


@dataclass
class ProposalCounts:
    """An image's proposals as a detection result keeps them: boxes per source and the total, what
    :meth:`Proposals.counts` gives (a few bytes to send to the driver, where the boxes are kilobytes)."""

    per_source: dict[str, int]

    def counts(self) -> dict[str, int]:
        return dict(self.per_source)


@dataclass
class Detected(ImageResult):
    """A :class:`DetectStep` result: ``proposals`` counted (:class:`ProposalCounts`), and with a
    :class:`Drawing`, ``drawing`` the image with its detections as PNG bytes, for the driver to write."""

    proposals: ProposalCounts | None = None  # type: ignore[assignment]
    drawing: bytes | None = None


@dataclass(frozen=True)
class Drawing:
    """Each image with its detections scoring >= ``threshold`` as ``folder/<key with .png>``: drawn
    where the image is classified (:meth:`encode`), written by the driver (:meth:`write`)."""

    folder: Path
    threshold: float = 0.5

    def path(self, key: str) -> Path:
        return self.folder / Path(key).with_suffix(".png")

    def encode(self, image: np.ndarray, detections: Detections, classes: Sequence[str]) -> bytes:
        drawn = draw_detections(image, detections, classes, self.threshold)
        return cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))[1].tobytes()

    def write(self, results: Sequence[ImageResult]) -> None:
        """The drawings of ``results``; call it before their lines mark them done, so that a resumed
        job never lacks one."""
        for result in results:
            if isinstance(result, Detected) and result.drawing is not None:
                with atomic_path(self.path(result.image.key)) as tmp:
                    tmp.write_bytes(result.drawing)


Step = Callable[[list[Loaded]], list[ImageResult]]


def _split(group: list[Loaded], kind: type[ImageResult] = ImageResult) -> tuple[list[Loaded], list[ImageResult]]:
    """The usable images of a group, and results (of ``kind``) for the ones that failed to load."""
    ok = [item for item in group if item.error is None]
    failed = [kind(item.image, error=item.error, transient=item.transient, warnings=item.warnings)
              for item in group if item.error is not None]
    return ok, failed


def _lap(seconds: dict[str, float], name: str, count: int, start: float) -> float:
    """Record stage ``name``'s seconds per image since ``start`` in ``seconds``; returns now, the next stage's start."""
    now = time.perf_counter()
    seconds[name] = (now - start) / max(count, 1)
    return now


class DetectStep:
    """Stages 1 (MultiBox) to 4 on a group of loaded images, batched across them."""

    def __init__(self, pipeline: Pipeline, drawing: Drawing | None = None) -> None:
        self.pipeline = pipeline
        self.drawing = drawing

    def __call__(self, group: list[Loaded]) -> list[ImageResult]:
        ok, results = _split(group, Detected)
        images = [item.pixels for item in ok]
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        proposals = self.pipeline.propose(images, [item.proposals for item in ok])
        if self.pipeline.proposer.multibox is not None:
            start = _lap(seconds, "multibox", len(ok), start)
        scores = self.pipeline.classify(images, proposals)
        start = _lap(seconds, "warp+classify", len(ok), start)
        detections = self.pipeline.select(proposals, scores)
        _lap(seconds, "nms", len(ok), start)
        for item, props, dets in zip(ok, proposals, detections):
            drawing = self.drawing.encode(item.pixels, dets, self.pipeline.classes) if self.drawing is not None else None
            height, width = item.pixels.shape[:2]
            results.append(Detected(item.image, ProposalCounts(props.counts()), dets, warnings=item.warnings,
                                    seconds={**item.seconds, **seconds}, size=(width, height), drawing=drawing))
        return sorted(results, key=lambda r: r.image.image_id)


class ProposeStep:
    """Stage 1 only: the loaded proposals with MultiBox's merged in. With ``keep_sources`` each result's
    ``by_source`` also holds selective search's and MultiBox's own boxes, to compare them."""

    def __init__(self, proposer: Proposer, keep_sources: bool = False) -> None:
        self.proposer = proposer
        self.keep_sources = keep_sources

    def __call__(self, group: list[Loaded]) -> list[ImageResult]:
        ok, results = _split(group)
        images = [item.pixels for item in ok]
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        merged, multibox = self.proposer.add_multibox_kept(images, [item.proposals for item in ok])
        if self.proposer.multibox is not None:
            _lap(seconds, "multibox", len(ok), start)
        for item, props, mb in zip(ok, merged, multibox):
            by_source = {"selective_search": item.proposals.boxes.numpy(), "multibox": mb} if self.keep_sources and mb is not None else {}
            height, width = item.pixels.shape[:2]
            results.append(ImageResult(item.image, props, warnings=item.warnings, seconds={**item.seconds, **seconds},
                                       size=(width, height), by_source=by_source))
        return sorted(results, key=lambda r: r.image.image_id)


@dataclass(frozen=True)
class ModelFile:
    """A model file as a job sends it to other machines: ``path`` absolute (the same on every node,
    e.g. a shared file system) or, for a file shipped with incdet (``shipped``), its name, found in
    each node's own install; and the SHA-256 the job recorded, so that a node whose file differs
    refuses the job instead of detecting differently under the same settings."""

    path: str
    sha256: str
    shipped: bool = False

    @classmethod
    def of(cls, path: str | Path, sha256: str) -> ModelFile:
        name = shipped_name(path)
        return cls(name, sha256, shipped=True) if name else cls(str(Path(path).absolute()), sha256)

    def local(self, node: str) -> Path:
        """This machine's copy (``node`` names the machine in the refusal), checked against the SHA-256."""
        path = shipped_file(self.path) if self.shipped else Path(self.path)
        need = "the same incdet version" if self.shipped else "the same file at this path"
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise InputError(path, f"cannot be read on {node} ({exc.strerror or exc}); every node needs {need}") from None
        if digest != self.sha256:
            raise InputError(path, f"on {node} has SHA-256 {digest[:16]}..., the job recorded {self.sha256[:16]}... "
                                   f"(every node needs {need})")
        return path


def _local(model: Any, node: str) -> Any:
    return model.local(node) if isinstance(model, ModelFile) else model


@dataclass(frozen=True)
class StepFactory:
    """How to build a step in any process: ``kind`` "detect" (``arguments``: :class:`Pipeline` arguments)
    or "propose" (``arguments``: :class:`Proposer` arguments); model files as paths, or as
    :class:`ModelFile` (:meth:`for_nodes`), checked where the step is built."""

    KINDS = ("detect", "propose")

    kind: str
    arguments: dict[str, Any]
    drawing: Drawing | None = None
    keep_sources: bool = False

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"a step is one of {', '.join(self.KINDS)}, not {self.kind!r}")

    @classmethod
    def for_nodes(cls, kind: str, arguments: dict[str, Any], recorded: Mapping[str, Any], **options: Any) -> StepFactory:
        """The factory of ``arguments`` with its model files (``models``, ``multibox``) as :class:`ModelFile`
        of the SHA-256 that ``recorded`` (the job's settings: :meth:`Pipeline.settings` or
        :meth:`Proposer.settings`) holds for each."""
        arguments = dict(arguments)
        if "models" in arguments:
            arguments["models"] = [ModelFile.of(path, record["sha256"]) for path, record in zip(arguments["models"], recorded["models"])]
        if arguments.get("multibox") is not None:
            arguments["multibox"] = ModelFile.of(arguments["multibox"], recorded["multibox"]["sha256"])
        return cls(kind, arguments, **options)

    def build(self, device: str | None = None, node: str | None = None) -> Step:
        """The step, its models loaded on ``device`` (default: the one in the arguments); a model file
        that is not the one the job recorded is refused, naming ``node`` (default: this host)."""
        node = node or socket.gethostname()
        arguments = {**self.arguments, **({"device": device} if device else {})}
        if "models" in arguments:
            arguments["models"] = [_local(model, node) for model in arguments["models"]]
        if "multibox" in arguments:
            arguments["multibox"] = _local(arguments["multibox"], node)
        if self.kind == "detect":
            return DetectStep(Pipeline(**arguments), self.drawing)
        return ProposeStep(Proposer(**arguments), self.keep_sources)


def init_worker() -> None:
    """One search per CPU core: the libraries' own thread pools would only oversubscribe it."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
