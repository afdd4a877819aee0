"""Batch engines: a :class:`incdet.pipeline.Pipeline` (or its stage 1) over folders of any size.

``plan`` cuts the input into fixed groups and shards; ``steps`` holds the worker half of a job
(decode once, search or read stored proposals) and its device half (MultiBox, ensemble, NMS on a
group); ``local`` runs them with DataLoader workers (started by ``forkserver``), ``ray_engine`` as
Ray Data operators, and ``run`` on either (:func:`process`, :func:`run_groups`); ``work`` keeps
detection results in a resumable work folder; ``jobs`` holds the batch jobs (``incdet detect``,
``incdet propose``, the proposal stores of region training) and ``shards`` joins their shards.

The names below are imported when first used (PEP 562), so that importing a light module of the
package (``forkserver``, ``plan``) does not import torch with the jobs.
"""

import importlib

_HOMES = {"DetectionJob": "jobs", "ProposalJob": "jobs", "detect_folder": "jobs", "propose_folder": "jobs",
          "Execution": "run", "process": "run", "run_groups": "run", "join_shards": "shards"}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"incdet.engine.{_HOMES[name]}"), name)
