"""``incdet propose``: selective-search (+ MultiBox) proposals for images, into a resumable proposal store.

Each image's proposals are committed to the store (``incdet.proposals.store``) as soon as they are
computed, so a rerun after a crash or Ctrl-C does only what is missing; ``--shard`` splits the work
over machines and ``--merge`` joins their stores. A flat ``.npz``/``.json`` ``--out`` is exported
from the store (kept beside it as ``OUT_STEM.db``) at the end, for other tools.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from incdet.commands._batch import FOLDERS, add_engine_arguments, add_search_arguments, execution, interrupted, search_settings, start_workers
from incdet.errors import InputError

OUT_SUFFIXES = (".db", ".npz", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "propose",
        help="selective-search (+ MultiBox) region proposals for images, into a resumable store",
        description="Compute selective-search proposals (R-CNN fast mode, GoogLeNet's doubled superpixels by default) "
        f"in parallel into a proposal store, keyed by image; optionally merge in a MultiBox network's top-N boxes and "
        f"measure them on ground truth. {FOLDERS} Rerun the same command to resume. Exit codes: 0 done, 1 no image "
        "could be processed, 2 bad input, 130 interrupted.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGES", help="image files or folders of images, or object-store URLs (s3://bucket/prefix)")
    parser.add_argument("--out", type=Path, required=True, help="the proposal store (.db), or a flat .npz/.json exported at the "
                        "end from the store OUT_STEM.db beside it")
    add_search_arguments(parser)
    parser.add_argument("--gt", type=Path, default=None, metavar="ANNOTATIONS",
                        help="ground truth in any format `incdet eval` reads; also report coverage, MABO and recall")
    mb = parser.add_argument_group("MultiBox (GoogLeNet's detection entry: selective search + top-N learned boxes)")
    mb.add_argument("--proposals", type=Path, metavar="FILE", help="selective-search boxes stored by an earlier run (.db/.npz/.json) instead of searching again")
    mb.add_argument("--multibox", type=Path, metavar="CKPT", help="add this MultiBox network's top-N boxes; the store records which "
                    "stage proposed each box, and a flat --out gets OUT_STEM.sources.json beside it")
    mb.add_argument("--top-n", type=int, default=200, help="MultiBox boxes per image (default: %(default)s, as the paper)")
    mb.add_argument("--dedup-iou", type=float, default=0.7, help="a MultiBox box this close to a selective-search box is the same box (default: %(default)s)")
    mb.add_argument("--report", action="store_true", help="with --gt: compare selective search, MultiBox and merged (MultiBox: --multibox, "
                    "else the shipped demo network) and write a recall plot; recomputes every image")
    mb.add_argument("--baseline", type=Path, action="append", default=[], metavar="FILE",
                    help="also report these flat proposal files (e.g. R-CNN's --superpixel-scale 1); repeatable")
    mb.add_argument("--plot", type=Path, metavar="PNG", help="recall-vs-proposals plot of --report (default: OUT_STEM_recall.png beside --out)")
    add_engine_arguments(parser)
    parser.add_argument("--merge", nargs="*", type=Path, metavar="STORES", help="join finished shards' stores (default: every "
                        "OUT_STEM.shard-I-of-N.db beside OUT) into OUT, instead of proposing")
    parser.set_defaults(func=run)


def _store_path(out: Path, suffix: str = "") -> Path:
    return out.with_name(f"{out.stem}{suffix}.db")


def run(args: argparse.Namespace) -> int:
    start_workers(args)  # before the imports below: the workers' own imports run meanwhile
    # Heavy imports here, not at module level: the CLI imports every command to build its parser.
    from incdet.engine import ProposalJob
    from incdet.engine.plan import Shard
    from incdet.io import check_output_path
    from incdet.multibox.proposer import Proposer

    out = check_output_path(args.out)
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(out, f"--out must end in {', '.join(OUT_SUFFIXES)}")
    if args.merge is not None:
        if args.images:
            raise InputError(None, "--merge joins finished shards' stores; give it no IMAGES")
        return _join(args.merge, out)
    if not args.images:
        raise InputError(None, "give the IMAGES to propose boxes for (files or folders), or --merge")
    search = search_settings(args)
    where = execution(args)
    shard = Shard.parse(args.shard)
    if args.report and args.gt is None:
        raise InputError(None, "--report needs --gt ANNOTATIONS to measure against")
    if args.baseline and not args.report:
        raise InputError(None, "--baseline is only used by --report")
    dataset = _ground_truth(args.gt) if args.gt is not None else None
    multibox = None
    if args.multibox or args.report:
        from incdet.commands._proposal_report import prepare_multibox

        multibox = prepare_multibox(args.multibox, args.top_n, args.dedup_iou, args.baseline)
    # The Ray engine's actors build their own MultiBox network; this copy only reads the file.
    local = args.engine == "local"
    if multibox is not None:
        proposer = Proposer(search, multibox.checkpoint, multibox.settings, args.device if local else "cpu", load=local)
    else:
        proposer = Proposer(search, device=args.device if local else "cpu")
    job = ProposalJob(args.images, _store_path(out, shard.suffix), proposer, proposals=args.proposals,
                      group_size=args.batch_images, shard=shard, redo=args.report, keep_sources=args.report)
    if job.done:
        print(f"resuming: {job.done} of {job.total} images are in {job.store.path}")

    by_source: dict[str, dict] = {}

    def keep(result) -> None:
        if args.report and result.error is None:
            by_source[result.image.key] = {**result.by_source, "merged": result.proposals.boxes.numpy()}

    stats = job.run(where, keep)
    present = job.present()
    if stats.interrupted:
        return interrupted(len(present), job.total, job.store.path)
    if not present:
        print(f"incdet: no image could be processed ({stats.skipped} skipped)", file=sys.stderr)
        return 1
    job.finish()
    _print_counts(job.store, present, stats, multibox is not None)
    if dataset is not None:
        _report(args, out, job.store, present, by_source, multibox, dataset)
    if not shard.whole:
        print(f"shard {shard.index}/{shard.count} done in {job.store.path}; when every shard is done: incdet propose --merge --out {out}")
    elif out != job.store.path:
        _export(out, job.store, [r.key for r in present], multibox is not None)
    else:
        print(f"proposals for {len(present)} image(s) are in {job.store.path}")
    return 0


def _ground_truth(path: Path):
    from incdet.data.dataset import load_dataset

    dataset = load_dataset(path)
    if len(dataset.skipped):
        print(f"ground truth {path}: {dataset.skipped.summary()}", file=sys.stderr)
        for message in dataset.skipped.messages():
            print(f"  {message}", file=sys.stderr)
    return dataset


def _print_counts(store, present, stats, merged: bool) -> None:
    import numpy as np

    from incdet.commands._proposal_report import describe_counts

    counts, sources = [], []
    for record in present:  # one row at a time: memory stays flat in the number of images
        proposals = store[record.key]
        counts.append(len(proposals))
        sources.append(proposals.counts())
    counts = np.array(counts)
    print(f"{len(present)} image(s) processed, {stats.skipped} skipped; proposals/image: mean {counts.mean():.0f} "
          f"(min {counts.min()}, max {counts.max()})")
    if stats.images and stats.seconds.get("search"):
        print(f"seconds/image: {stats.seconds['search'] / stats.images:.2f} per worker, {stats.wall / stats.images:.2f} "
              "wall-clock over the batch")
    if merged:
        print(describe_counts(sources))


def _report(args, out: Path, store, present, by_source, job, dataset) -> None:
    from incdet.proposals.report import quality_report

    if not args.report:
        print(quality_report({store.path.name: {r.key: store[r.key].boxes.numpy() for r in present}}, dataset))
        return
    ss_name = f"selective search ({args.proposals.name})" if args.proposals else f"selective search x{args.superpixel_scale:g}"
    names = {"selective_search": ss_name, "multibox": f"MultiBox top-{job.settings.top_n}", "merged": "merged"}
    sets = {label: {key: p[source] for key, p in by_source.items()} for source, label in names.items()}
    plot = args.plot or out.with_name(f"{out.stem}_recall.png")
    print(quality_report({**sets, **job.baselines}, dataset, plot, f"{args.gt}: proposals per image vs recall"))
    print(f"wrote the recall plot to {plot}")


def _export(out: Path, store, keys: list[str], merged: bool) -> None:
    from incdet.proposals.files import save_proposals, sources_path, write_sources

    save_proposals(out, {key: store[key].boxes.numpy() for key in keys})
    if merged:
        write_sources(sources_path(out), {key: store[key] for key in keys})
        print(f"wrote the source of every merged box to {sources_path(out)}")
    print(f"wrote proposals for {len(keys)} image(s) to {out} (store: {store.path})")


def _join(stores: list[Path], out: Path) -> int:
    from incdet.engine import join_shards
    from incdet.proposals.store import ProposalStore

    target = _store_path(out)
    joined = join_shards(target, stores)
    print(f"merged {joined.rows} image(s) from {len(joined.shards)} shard store(s) into {target}")
    if out != target:
        with ProposalStore(target, readonly=True) as merged:
            _export(out, merged, list(merged), "multibox" in merged.settings and merged.settings["multibox"] is not None)
    return 0
