"""Batch engines: a :class:`incdet.pipeline.Pipeline` (or its stage 1) over folders of any size.

``plan`` cuts the input into fixed groups and shards; ``steps`` holds the worker half of a job
(decode once, search or read stored proposals) and its device half (MultiBox, ensemble, NMS on a
group); ``local`` runs them with DataLoader workers, ``ray_engine`` as Ray Data operators, and
``run`` on either (:func:`process`, :func:`run_groups`); ``work`` keeps detection results in a
resumable work folder; ``jobs`` holds the batch jobs (``incdet detect``, ``incdet propose``, the
proposal stores of region training) and ``shards`` joins their shards.
"""

from incdet.engine.jobs import DetectionJob, ProposalJob, detect_folder, propose_folder
from incdet.engine.run import Execution, process, run_groups
from incdet.engine.shards import join_shards

__all__ = ["DetectionJob", "Execution", "ProposalJob", "detect_folder", "join_shards", "process", "propose_folder", "run_groups"]
