"""Stages 1-4 as one object: RGB images in, detections out (what ``incdet detect`` runs).

    from incdet import Pipeline
    from incdet.io import read_image

    pipeline = Pipeline()  # the shipped demo: selective search + MultiBox -> an ensemble of 3 region classifiers -> NMS
    detections = pipeline([read_image("demo/test/images/0000.png")])[0]

:meth:`Pipeline.__call__` is the whole detector in three lines, as torchvision's
``GeneralizedRCNN.forward``: propose, warp and classify, select. Each step is a method of its own
so the batch engines (:mod:`incdet.engine`) can run them where they belong: selective search (one
image per CPU core) in worker processes, MultiBox and the ensemble batched across images on the
device. Boxes are float32 (N, 4) ``(x1, y1, x2, y2)`` pixels of the image as given.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from incdet.bundle import Bundle, read_bundle
from incdet.classify.ensemble import load_ensemble, read_ensemble_specs
from incdet.classify.onnx_runtime import resolve_runtime
from incdet.devices import resolve_device, resolve_precision
from incdet.errors import InputError
from incdet.model_file import model_record
from incdet.multibox.propose import MultiBoxSettings
from incdet.multibox.proposer import Proposer
from incdet.postprocess.nms import SelectionSettings, select_detections  # SelectionSettings also re-exported from here
from incdet.proposals.settings import SearchSettings
from incdet.regions.warp import warp_source
from incdet.structures import Detections, Proposals, RegionScores
from incdet.transforms import image_to_tensor
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS

class Shipped(enum.Enum):
    """A default that stands for a file shipped with incdet: no path a user gives can be mistaken for it."""

    MULTIBOX = "the shipped MultiBox network when the shipped region models are used"


DEFAULT_MULTIBOX = Shipped.MULTIBOX


def default_multibox(models: Sequence[str | Path], multibox: str | Path | Shipped | None) -> Path | None:
    """The MultiBox network ``multibox`` names: :data:`DEFAULT_MULTIBOX` is the shipped one when the
    region models are the shipped ones (it was trained on the same demo data) and it exists."""
    if multibox is not DEFAULT_MULTIBOX:
        return Path(multibox) if multibox is not None else None
    shipped = [Path(m).resolve() for m in models] == [m.resolve() for m in DEMO_REGION_MODELS]
    return DEMO_MULTIBOX if shipped and DEMO_MULTIBOX.is_file() else None


class Pipeline:
    """The detector: proposals (selective search + optional MultiBox) -> context-padded warp ->
    ensemble of region classifiers -> per-class NMS.

    ``models``: region-classifier checkpoints (an ensemble; default the shipped demo ensemble of three,
    ``incdet.weights.DEMO_REGION_MODELS``);
    ``multibox``: a MultiBox checkpoint, None for selective search only, or :data:`DEFAULT_MULTIBOX` (the
    shipped network with the shipped models, else none); ``classes``: refuse models trained on
    another class list; ``bbox_reg``: move boxes with the regressors of the models that have one;
    ``precision``: fp32, bf16 or fp16 autocast for the networks (``auto``: bf16 on a GPU that has
    it, fp32 on the CPU); ``runtime``: what runs the region classifiers, torch or onnxruntime
    (``auto``: onnxruntime for fp32 on the CPU, where it is faster). ``arguments`` keeps the arguments, model paths made absolute and :data:`DEFAULT_MULTIBOX`
    resolved, so ``Pipeline(**p.arguments)`` builds the same pipeline in another process and folder.
    :meth:`from_bundle` builds one from a model bundle (:mod:`incdet.bundle`), kept as ``bundle``.
    ``load=False``: read and check the model files but build no network (``ensemble`` and the
    proposer's ``multibox`` stay None): what a driver needs whose workers build their own, e.g. the
    Ray engine's, to record the job's settings.
    """

    # What Pipeline.from_bundle's keywords may override: everything but the models themselves.
    BUNDLE_OVERRIDES = ("multibox", "search", "multibox_settings", "selection", "classes", "bbox_reg", "device", "precision", "runtime",
                        "load")

    def __init__(
        self,
        models: Sequence[str | Path] = DEMO_REGION_MODELS,
        multibox: str | Path | Shipped | None = DEFAULT_MULTIBOX,
        search: SearchSettings = SearchSettings(),
        *,
        multibox_settings: MultiBoxSettings = MultiBoxSettings(),
        selection: SelectionSettings = SelectionSettings(),
        classes: Sequence[str] | None = None,
        bbox_reg: bool = True,
        device: str = "auto",
        precision: str = "auto",
        runtime: str = "auto",
        load: bool = True,
    ) -> None:
        models = [str(Path(m).absolute()) for m in models]
        if not models:
            raise InputError(None, "a pipeline needs at least one region-classifier model")
        multibox = default_multibox(models, multibox)
        self.arguments = {"models": models, "multibox": None if multibox is None else str(multibox.absolute()), "search": search,
                       "multibox_settings": multibox_settings, "selection": selection,
                       "classes": None if classes is None else list(classes), "bbox_reg": bbox_reg, "device": device, "precision": precision,
                       "runtime": runtime}
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.runtime = resolve_runtime(runtime, self.device, self.precision)
        self.ensemble = load_ensemble(models, self.device, classes, bbox_reg, self.precision, self.runtime).to(self.device) if load else None
        self.specs = self.ensemble.specs if load else read_ensemble_specs(models, classes)
        self.bbox_reg = bbox_reg
        self.proposer = Proposer(search, multibox, multibox_settings, self.device, self.precision, load=load)
        self.selection = selection
        self.bundle: Bundle | None = None

    @classmethod
    def from_bundle(cls, bundle: str | Path | Bundle, **overrides: Any) -> Pipeline:
        """The detector a model bundle holds: its members, MultiBox network and settings, search
        settings, selection settings and class list (a folder is read and checked with :func:`read_bundle`).
        ``overrides`` (any keyword of the constructor but ``models``: ``device``, ``precision``,
        ``runtime``, ``selection``, ``bbox_reg``, ``search``, ``multibox=None`` to drop MultiBox ...) win."""
        unknown = sorted(set(overrides) - set(cls.BUNDLE_OVERRIDES))
        if unknown:
            raise TypeError(f"from_bundle() cannot override {', '.join(unknown)} (it may: {', '.join(cls.BUNDLE_OVERRIDES)})")
        if not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle)
        arguments = {"multibox": bundle.multibox, "search": bundle.search, "multibox_settings": bundle.multibox_settings,
                     "selection": bundle.selection, "classes": bundle.classes, **overrides}
        pipeline = cls(bundle.members, **arguments)
        pipeline.bundle = bundle
        return pipeline

    @property
    def classes(self) -> tuple[str, ...]:
        return self.specs[0].classes

    def __call__(self, images: Sequence[np.ndarray], proposals: Sequence[Proposals] | None = None) -> list[Detections]:
        """Detections (on the CPU, best first) of HxWx3 RGB uint8 images; ``proposals``: precomputed
        ones per image (MultiBox's are still merged in when the pipeline has a network)."""
        proposals = self.propose(images, proposals)
        scores = self.classify(images, proposals)
        return self.select(proposals, scores)

    def propose(self, images: Sequence[np.ndarray], proposals: Sequence[Proposals] | None = None) -> list[Proposals]:
        return self.proposer(images, proposals)

    def classify(self, images: Sequence[np.ndarray], proposals: Sequence[Proposals]) -> list[RegionScores]:
        """Warp every proposal of every image and score it with the ensemble, batched across images
        (an image far larger than its regions need is reduced first: :func:`warp_source`). The
        images go to the device from pinned memory without waiting; the boxes stay on the CPU,
        where the warp plans its calls."""
        crops = [(spec.input_size, spec.context_pad) for spec in self.ensemble.specs]
        sources = [warp_source(image, p.boxes, crops) for image, p in zip(images, proposals)]
        scores = self.ensemble([image_to_tensor(s.image, self.device) for s in sources], [s.boxes for s in sources])
        return [r if r.boxes is None else RegionScores(r.probs, r.boxes * s.scale.to(r.boxes.device)) for r, s in zip(scores, sources)]

    def select(self, proposals: Sequence[Proposals], scores: Sequence[RegionScores]) -> list[Detections]:
        """Stage 4 for each image on the device, then every image's detections to the CPU in one copy."""
        t = self.selection
        found = [select_detections(p, s, t.score_threshold, t.nms_iou, t.max_detections) for p, s in zip(proposals, scores)]
        if not found:
            return []
        return Detections.concat(found).to("cpu").split([len(d) for d in found])

    def settings(self) -> dict[str, Any]:
        """Everything detections depend on besides the proposals' source, as a job records it (and,
        built from a bundle, which bundle: its folder's name and the SHA-256 of its bundle.json)."""
        settings = {"models": [model_record(m) for m in self.arguments["models"]], **self.proposer.settings(),
                    "selection": asdict(self.selection), "classes": list(self.classes),
                    "bbox_reg": self.bbox_reg and any(spec.bbox_reg for spec in self.specs),
                    # As asked: an engine's workers resolve "auto" on their own devices.
                    "precision": self.arguments["precision"], "runtime": self.arguments["runtime"]}
        if self.bundle is not None:  # only then: a resumed job compares the record byte for byte
            settings["bundle"] = self.bundle.record()
        return settings
